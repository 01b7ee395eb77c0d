//! Traffic policy on the worker: who the client is ([`origin`]), rate limits counted with GCRA
//! ([`gcra`], one timestamp per key, in a bounded table that forgets keys once they carry no
//! information: [`keyed`]).
//!
//! Everything here is the worker's own (no lock, no atomic): a limit that spans workers is either
//! exact because each client address is steered to one worker, or split across the workers with
//! the bound that docs/config.md states.

pub mod gcra;
pub mod keyed;
pub mod origin;
pub mod rate_limit;
