//! The CPUs this process may run on (its affinity mask), so worker N pins to the N-th of them —
//! respecting `taskset`, cgroups' cpusets and systemd's `CPUAffinity=`.

/// CPU ids in the calling thread's affinity mask, ascending. Falls back to `0..n` (n = available
/// parallelism) if the mask cannot be read.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is a plain bitmask for which all-zeroes is a valid value, and
    // sched_getaffinity writes at most `size_of::<cpu_set_t>()` bytes into it.
    let mask = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            None
        } else {
            Some(set)
        }
    };
    let cpus: Vec<usize> = match mask {
        // SAFETY: CPU_ISSET only reads the mask, for ids below CPU_SETSIZE.
        Some(set) => (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect(),
        None => Vec::new(),
    };
    if cpus.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        (0..n).collect()
    } else {
        cpus
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn there_is_at_least_one_cpu_and_ids_ascend() {
        let cpus = super::allowed_cpus();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
    }
}
