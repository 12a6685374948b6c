//! Shows a child's output with its name in front (`[server] …`), line by line, on the
//! same stream (stdout or stderr) it was written to.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::console;

/// Which of tether-local's streams the lines go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Out,
    /// Standard error.
    Err,
}

/// What to do with the rows of the agent's terminal QR code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrRows {
    /// Show them like any line.
    Show,
    /// Replace them with one line: tether-local's banner shows the code in one piece,
    /// where other processes' lines cannot cut through it.
    Fold,
}

/// Copies `reader` to `stream` until it ends, each line after `prefix`.
pub async fn forward<R: AsyncRead + Unpin>(reader: R, prefix: String, stream: Stream, qr: QrRows) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    let mut in_qr = false;
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']);
        if qr == QrRows::Fold && is_qr_row(line) {
            if !in_qr {
                in_qr = true;
                write(
                    stream,
                    &format!("{prefix}(QR code: shown in tether-local's banner)\n"),
                );
            }
            continue;
        }
        in_qr = false;
        write(stream, &format!("{prefix}{line}\n"));
    }
}

fn write(stream: Stream, text: &str) {
    match stream {
        Stream::Out => console::out(text),
        Stream::Err => console::err(text),
    }
}

/// A row of a QR code as the agent draws it on a terminal: half and full blocks and
/// spaces only, at least one block.
pub fn is_qr_row(line: &str) -> bool {
    line.chars().any(|c| matches!(c, '█' | '▀' | '▄'))
        && line.chars().all(|c| matches!(c, '█' | '▀' | '▄' | ' '))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_agent_s_qr_rows_are_recognised_and_nothing_else() {
        let qr = tether_agent::qr::Modules::encode("https://localhost:8443/pair#token=abc")
            .unwrap()
            .to_terminal();
        assert!(qr.lines().all(is_qr_row));
        for line in [
            "",
            "    ",
            "pair URL: https://x",
            "[agent] █",
            "Waiting for the owner...",
        ] {
            assert!(!is_qr_row(line), "{line:?}");
        }
    }
}
