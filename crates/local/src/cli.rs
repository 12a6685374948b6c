//! The command line, checked once into a [`LocalConfig`]; nothing below reads arguments
//! or the environment again.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use tether_agent::config::DeviceName;

use crate::error::LocalError;
use crate::layout::Layout;

/// Tether on one machine: the server with its web app, and this PC as a device to pair
/// and command, started and stopped together by one command.
///
/// Three processes run until Ctrl-C or SIGTERM, their output shown with a prefix:
///
///   [server]  tether-server on --listen, its store, keys and CA in --data-dir
///   [agent]   tether-agent for this PC, its state in DATA_DIR/local-pc/agent
///   [helper]  tether-helper with the recording executor: a command this PC carries out
///             is recorded in DATA_DIR/local-pc/recorded.jsonl; nothing is performed
///
/// Then a banner shows the web app's URL, the fingerprint of the server's CA, and a QR
/// code and link that pair this PC with the account you create in the web app. A later
/// run on the same --data-dir keeps the account and the pairing.
///
/// Ctrl-C stops the agent, then the helper, then the server (a second Ctrl-C kills what
/// is left). If one of them stops by itself, the others are stopped and tether-local
/// exits non-zero.
///
/// Examples:
///
///   tether-local                               https://localhost:8443, data in ./tether-data
///   tether-local --listen 127.0.0.1:9443       another port
///   tether-local --listen 0.0.0.0:8443 --public-url https://192.168.1.20:8443
///                                              reachable from a phone on the same network
///   tether-local --no-pc                       the server alone
#[derive(Debug, Parser)]
#[command(
    name = "tether-local",
    version,
    about,
    long_about,
    verbatim_doc_comment
)]
pub struct Cli {
    /// The server's data dir (SQLite store, embedded bus, keys, CA); the local PC's
    /// agent and helper keep their state in its local-pc/ folder.
    #[arg(long, value_name = "DIR", default_value = "./tether-data")]
    pub data_dir: PathBuf,
    /// The server's address for HTTPS and WSS; port 0 picks a free one.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// The URL browsers, phones and the agent use to reach the server (QR codes point
    /// here) [default: https://localhost:<port>]. Keep it the same from run to run: the
    /// local PC stays paired with the URL it was paired with.
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Run only the server: no agent or helper for this PC.
    #[arg(long)]
    pub no_pc: bool,
    /// The name this PC is paired under [default: the hostname].
    #[arg(long, value_name = "NAME", conflicts_with = "no_pc")]
    pub device_name: Option<String>,
}

/// Everything a run needs, checked.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// The paths under the data dir.
    pub layout: Layout,
    /// The server's address.
    pub listen: SocketAddr,
    /// The server's public URL, when given.
    pub public_url: Option<String>,
    /// The local PC, unless `--no-pc` (or a platform without the helper).
    pub pc: Option<PcConfig>,
    /// Why there is no local PC, to tell the user.
    pub no_pc_reason: Option<&'static str>,
}

/// The local PC.
#[derive(Debug, Clone)]
pub struct PcConfig {
    /// The name it pairs under.
    pub device_name: DeviceName,
}

impl LocalConfig {
    /// Checks the command line. `hostname` is the machine's name, the default device name.
    pub fn from_cli(cli: Cli, hostname: Option<String>) -> Result<Self, LocalError> {
        let layout = Layout::new(&cli.data_dir)?;
        let (pc, no_pc_reason) = if cli.no_pc {
            (None, Some("--no-pc: the server runs alone"))
        } else if !cfg!(unix) {
            (
                None,
                Some(
                    "the local PC (agent + helper) runs on Linux only for now: the helper's \
                     Windows service comes later. The server runs alone; pair a PC by \
                     running tether-agent on it",
                ),
            )
        } else {
            let device_name = match &cli.device_name {
                Some(n) => DeviceName::parse(n).map_err(|e| LocalError::Usage(e.to_string()))?,
                None => DeviceName::sanitize(hostname.as_deref().unwrap_or("pc")),
            };
            layout.check_for_pc()?;
            (Some(PcConfig { device_name }), None)
        };
        if let Some(url) = &cli.public_url
            && !url.starts_with("https://")
        {
            return Err(LocalError::Usage(format!(
                "--public-url {url}: must be an https:// URL"
            )));
        }
        Ok(Self {
            layout,
            listen: cli.listen,
            public_url: cli.public_url,
            pc,
            no_pc_reason,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<LocalConfig, LocalError> {
        let cli = Cli::try_parse_from(std::iter::once("tether-local").chain(args.iter().copied()))
            .expect("parses");
        LocalConfig::from_cli(cli, Some("lab-host".into()))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_readme_s() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8443".parse().unwrap());
        assert!(c.layout.data_dir.ends_with("tether-data"));
        assert_eq!(c.public_url, None);
        if cfg!(unix) {
            assert_eq!(c.pc.unwrap().device_name.as_str(), "lab-host");
        }
    }

    #[test]
    fn no_pc_runs_the_server_alone() {
        let c = parse(&["--no-pc"]).unwrap();
        assert!(c.pc.is_none());
        assert!(c.no_pc_reason.is_some());
        assert!(
            Cli::try_parse_from(["tether-local", "--no-pc", "--device-name", "x"]).is_err(),
            "a device name without a PC is a mistake"
        );
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let e = parse(&["--public-url", "http://lab:8443"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        if cfg!(unix) {
            let e = parse(&["--device-name", "  "]).unwrap_err();
            assert_eq!(e.exit_code(), 2);
        }
    }
}
