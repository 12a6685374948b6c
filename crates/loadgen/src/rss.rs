//! Resident memory of another process, from `/proc/<pid>/status` (Linux).

use crate::LoadError;

/// Memory figures of one process, in KiB (what `/proc` calls "kB").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident size since the process started.
    pub hwm_kib: u64,
}

/// Samples the memory of process `pid`.
pub fn sample(pid: u32) -> Result<Memory, LoadError> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(LoadError::io(format!("reading {path}")))?;
    parse_status(&text).ok_or_else(|| LoadError::Format(format!("{path}: no VmRSS/VmHWM")))
}

/// The figures in the text of a `/proc/<pid>/status` file.
pub fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|n| n.trim().parse::<u64>().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_and_peak() {
        let text = "Name:\ttether-server\nVmHWM:\t   52344 kB\nVmRSS:\t   41020 kB\nThreads:\t3\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                rss_kib: 41020,
                hwm_kib: 52344
            })
        );
        assert_eq!(parse_status("VmRSS:\tlots\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let m = sample(std::process::id());
        assert!(m.is_ok_and(|m| m.rss_kib > 0 && m.hwm_kib >= m.rss_kib));
    }
}
