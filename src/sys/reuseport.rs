//! Steering a `SO_REUSEPORT` group's new connections by the client's address: a classic-BPF
//! program attached to the group (`SO_ATTACH_REUSEPORT_CBPF`) picks the socket for each new
//! connection as `hash(source address) % sockets`, so every connection of one address lands on
//! the same socket — the same worker — whatever its source port.
//!
//! Flow: [`attach_client_address_steering`] builds the program for the group's size and attaches
//! it through one member socket (the kernel keeps one program per group). The program reads the
//! packet's protocol; for IPv4 it loads the source address (network header offset 12); for IPv6
//! it xors the four words of the source address (offsets 8 to 20). It then multiplies by the
//! 32-bit golden-ratio constant, folds the high half into the low one and takes the remainder
//! by the group's size. The kernel maps the result to the socket that joined the group at that
//! position (sockets join at `listen`, so the caller binds them in worker order); an index
//! outside the group (a socket closed meanwhile) falls back to the kernel's own hash.

use std::os::fd::RawFd;

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic; x86, arm, riscv). The libc crate exports it for
/// Android only.
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;
/// `ETH_P_IPV6`, as `SKF_AD_PROTOCOL` loads it (host order).
const ETH_P_IPV6: u32 = 0x86dd;
/// ⌊2³² / φ⌋: multiplying by it spreads neighbouring addresses over the whole word.
const GOLDEN_RATIO_32: u32 = 0x9e37_79b1;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// A load of the 32-bit word at `offset` of the network header.
fn load_net_word(offset: i32) -> libc::sock_filter {
    stmt(
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        (libc::SKF_NET_OFF + offset) as u32,
    )
}

/// The program for a group of `sockets` sockets (at least 1).
pub fn client_address_program(sockets: u32) -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_ALU, BPF_JA, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_MISC, BPF_W, BPF_X};
    let xor_x = BPF_ALU | libc::BPF_XOR | BPF_X;
    let tax = BPF_MISC | libc::BPF_TAX;
    vec![
        // 0: A = the packet's protocol
        stmt(
            BPF_LD | BPF_W | BPF_ABS,
            (libc::SKF_AD_OFF + libc::SKF_AD_PROTOCOL) as u32,
        ),
        // 1: IPv6 → 4, else 2
        jump(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IPV6, 2, 0),
        // 2: IPv4: A = source address
        load_net_word(12),
        // 3: → hash
        jump(BPF_JMP | BPF_JA, 10, 0, 0),
        // 4–13: IPv6: A = xor of the source address's four words
        load_net_word(8),
        stmt(tax, 0),
        load_net_word(12),
        stmt(xor_x, 0),
        stmt(tax, 0),
        load_net_word(16),
        stmt(xor_x, 0),
        stmt(tax, 0),
        load_net_word(20),
        stmt(xor_x, 0),
        // 14: hash: A *= φ; A ^= A >> 16; A %= sockets
        stmt(BPF_ALU | libc::BPF_MUL | BPF_K, GOLDEN_RATIO_32),
        stmt(tax, 0),
        stmt(BPF_ALU | libc::BPF_RSH | BPF_K, 16),
        stmt(xor_x, 0),
        stmt(BPF_ALU | libc::BPF_MOD | BPF_K, sockets.max(1)),
        // 19: the index of the socket in the group
        stmt(libc::BPF_RET | libc::BPF_A, 0),
    ]
}

/// What [`client_address_program`] computes for `source`: the tests check the kernel agrees.
#[cfg(test)]
pub(crate) fn client_address_index(source: std::net::IpAddr, sockets: u32) -> u32 {
    let word = match source {
        std::net::IpAddr::V4(v4) => u32::from(v4),
        std::net::IpAddr::V6(v6) => {
            let o = v6.octets();
            (0..4).fold(0, |acc, i| {
                acc ^ u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    };
    let a = word.wrapping_mul(GOLDEN_RATIO_32);
    (a ^ (a >> 16)) % sockets.max(1)
}

/// Attaches the client-address program for a group of `sockets` sockets through `fd`, a bound
/// `SO_REUSEPORT` socket of the group.
pub fn attach_client_address_steering(fd: RawFd, sockets: u32) -> std::io::Result<()> {
    let mut program = client_address_program(sockets);
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points at `program`, alive for the call; the kernel copies the program.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
