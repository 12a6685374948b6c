//! The run: the server; then, with a local PC, the agent and the helper wired to each
//! other; the banner; then watching until a stop signal or a process ending by itself;
//! then the stop, in order: agent, helper, server.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tether_proto::Clock;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::announce::Announcer;
use crate::banner::Facts;
use crate::child::{Child, Stopped, clean};
use crate::cli::{LocalConfig, PcConfig};
use crate::console;
use crate::error::LocalError;
use crate::pc::{PcView, check_same_server};
use crate::role::Role;
use crate::{listen, signals};

/// How often the processes and the agent's state are looked at.
const TICK: Duration = Duration::from_millis(100);
/// How long the server may take to listen (a first start creates the CA).
const SERVER_READY_WITHIN: Duration = Duration::from_secs(60);
/// How long the agent may take to write its public key (which the helper needs).
const AGENT_KEY_WITHIN: Duration = Duration::from_secs(60);
/// Grace periods at a stop. The server's own drain of open requests takes up to 10 s.
const AGENT_GRACE: Duration = Duration::from_secs(10);
const HELPER_GRACE: Duration = Duration::from_secs(10);
const SERVER_GRACE: Duration = Duration::from_secs(15);

/// Runs the local system until a stop signal (`Ok`) or a failure (`Err`, after the
/// processes still running were stopped).
pub async fn run(
    config: LocalConfig,
    exe: PathBuf,
    clock: Arc<dyn Clock>,
) -> Result<(), LocalError> {
    let shutdown = CancellationToken::new();
    let hurry = CancellationToken::new();
    let signals = signals::spawn(shutdown.clone(), hurry.clone());
    let mut system = System {
        exe,
        plain_logs: !std::io::stderr().is_terminal(),
        config,
        clock,
        server: None,
        agent: None,
        helper: None,
    };
    let result = system.run(&shutdown).await;
    let why = match &result {
        Ok(()) => "stopping".to_owned(),
        Err(LocalError::ChildDied { name, status }) => {
            format!("the {name} stopped unexpectedly ({status}); stopping")
        }
        Err(_) => "stopping".to_owned(),
    };
    let stopped = system.stop_all(&why, &hurry).await;
    signals.abort();
    let _ = signals.await;
    result.and(stopped)
}

/// The server's ready file.
#[derive(Debug, Deserialize)]
struct Ready {
    public_url: String,
    ca_pem: String,
}

#[derive(Debug)]
struct System {
    exe: PathBuf,
    /// Children's logs without colours (tether-local's stderr is not a terminal).
    plain_logs: bool,
    config: LocalConfig,
    clock: Arc<dyn Clock>,
    server: Option<Child>,
    agent: Option<Child>,
    helper: Option<Child>,
}

impl System {
    async fn run(&mut self, shutdown: &CancellationToken) -> Result<(), LocalError> {
        listen::check(self.config.listen)?;
        let layout = self.config.layout.clone();
        layout.create(self.config.pc.is_some())?;
        remove_if_present(&layout.ready_file)?;

        console::note(&format!(
            "starting the server on {} (data: {})",
            self.config.listen,
            layout.data_dir.display()
        ));
        self.server = Some(Child::spawn(
            &self.exe,
            Role::Server,
            self.server_args(),
            self.plain_logs,
        )?);
        let ready_file = layout.ready_file.clone();
        let Some(ready) = self
            .wait_for(shutdown, SERVER_READY_WITHIN, Role::Server, "start", || {
                read_ready(&ready_file)
            })
            .await?
        else {
            return Ok(());
        };
        let fingerprint = tether_client::first_cert_der(&ready.ca_pem)
            .map(|der| tether_client::fingerprint(&der))
            .map_err(|e| LocalError::Unexpected(format!("the server's CA: {e}")))?;

        if let Some(pc) = self.config.pc.clone() {
            check_same_server(
                &layout.agent_state,
                &layout.pc_dir,
                &ready.public_url,
                &fingerprint,
            )?;
            std::fs::write(&layout.ca_file, &ready.ca_pem)
                .map_err(LocalError::io(&layout.ca_file))?;
            console::note("starting this PC's agent and helper (recording executor)");
            self.agent = Some(self.spawn_agent(&ready.public_url, &pc)?);
            let agent_pub = layout.agent_pub.clone();
            let key = self
                .wait_for(
                    shutdown,
                    AGENT_KEY_WITHIN,
                    Role::Agent,
                    "write its key",
                    || Ok(agent_pub.exists().then_some(())),
                )
                .await?;
            if key.is_none() {
                return Ok(());
            }
            self.helper = Some(Child::spawn(
                &self.exe,
                Role::Helper,
                self.helper_args(),
                self.plain_logs,
            )?);
        }

        let pc = self.config.pc.clone();
        let device_name = pc.as_ref().map(|p| p.device_name.as_str().to_owned());
        let no_pc_reason = self.config.no_pc_reason;
        let facts = |now| Facts {
            url: &ready.public_url,
            fingerprint: &fingerprint,
            layout: &layout,
            device_name: device_name.as_deref(),
            no_pc_reason,
            now,
        };
        let mut announcer = Announcer::new(Instant::now());
        // The pairing request shown when the agent was last started again for a new one.
        let mut restarted_for: Option<String> = None;
        loop {
            let now = self.clock.now();
            let view = pc.as_ref().map(|_| PcView::read(&layout.agent_state, now));
            if let Some(text) = announcer.tick(Instant::now(), view, &facts(now)) {
                console::out(&text);
            }
            if let Err(e) = self.check_children() {
                // An agent whose pairing request expired unconfirmed ends; a new one asks
                // again (once per request shown), so an unhurried user is not left with
                // nothing running.
                let watch = announcer.watch();
                let expired = matches!(e, LocalError::ChildDied { name: "agent", .. })
                    && watch.waiting_for_owner()
                    && watch.shown_request() != restarted_for.as_deref()
                    && PcView::read(&layout.agent_state, self.clock.now()) == PcView::Starting;
                let Some(pc) = pc.as_ref().filter(|_| expired) else {
                    return Err(e);
                };
                console::note("the pairing code expired unconfirmed: asking for a new one");
                restarted_for = watch.shown_request().map(str::to_owned);
                self.agent = Some(self.spawn_agent(&ready.public_url, pc)?);
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }

    fn server_args(&self) -> Vec<OsString> {
        let l = &self.config.layout;
        let mut args: Vec<OsString> = vec![
            "--data-dir".into(),
            l.data_dir.clone().into(),
            "--listen".into(),
            self.config.listen.to_string().into(),
            "--ready-file".into(),
            l.ready_file.clone().into(),
        ];
        if let Some(url) = &self.config.public_url {
            args.extend(["--public-url".into(), url.into()]);
        }
        args
    }

    fn spawn_agent(&self, url: &str, pc: &PcConfig) -> Result<Child, LocalError> {
        let l = &self.config.layout;
        let args: Vec<OsString> = vec![
            "run".into(),
            "--server".into(),
            url.into(),
            "--state-dir".into(),
            l.agent_state.clone().into(),
            "--ca-file".into(),
            l.ca_file.clone().into(),
            "--device-name".into(),
            pc.device_name.as_str().into(),
            "--helper-socket".into(),
            l.helper_socket.clone().into(),
            "--helper-key-file".into(),
            l.helper_pub.clone().into(),
        ];
        Child::spawn(&self.exe, Role::Agent, args, self.plain_logs)
    }

    fn helper_args(&self) -> Vec<OsString> {
        let l = &self.config.layout;
        vec![
            "run".into(),
            "--socket".into(),
            l.helper_socket.clone().into(),
            "--state-dir".into(),
            l.helper_state.clone().into(),
            "--agent-key-file".into(),
            l.agent_pub.clone().into(),
            // The agent is this executable too: only it may call the helper.
            "--agent-exe".into(),
            self.exe.clone().into(),
            "--executor".into(),
            "recording".into(),
            "--record".into(),
            l.record.clone().into(),
        ]
    }

    /// `Err` naming the first process (server, helper, agent) that has ended.
    fn check_children(&mut self) -> Result<(), LocalError> {
        for child in [&mut self.server, &mut self.helper, &mut self.agent]
            .into_iter()
            .flatten()
        {
            if let Some(status) = child.ended()? {
                return Err(LocalError::ChildDied {
                    name: child.role().name(),
                    status,
                });
            }
        }
        Ok(())
    }

    /// Polls `probe` until it has something (`Some`), a process ends (`Err`), the time
    /// is up (`Err`) or a stop signal comes (`None`).
    async fn wait_for<T>(
        &mut self,
        shutdown: &CancellationToken,
        within: Duration,
        who: Role,
        what: &'static str,
        mut probe: impl FnMut() -> Result<Option<T>, LocalError>,
    ) -> Result<Option<T>, LocalError> {
        let started = Instant::now();
        loop {
            self.check_children()?;
            if let Some(v) = probe()? {
                return Ok(Some(v));
            }
            if started.elapsed() >= within {
                return Err(LocalError::NotReady {
                    name: who.name(),
                    what,
                    seconds: within.as_secs(),
                });
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(None),
                () = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// Stops what runs: the agent, then the helper, then the server.
    async fn stop_all(&mut self, why: &str, hurry: &CancellationToken) -> Result<(), LocalError> {
        let running: Vec<&str> = [&mut self.agent, &mut self.helper, &mut self.server]
            .into_iter()
            .flatten()
            .filter_map(|c| matches!(c.ended(), Ok(None)).then(|| c.role().name()))
            .collect();
        if running.is_empty() {
            return Ok(());
        }
        console::note(&format!("{why}: the {}", running.join(", then the ")));
        let mut result = Ok(());
        for (slot, grace) in [
            (&mut self.agent, AGENT_GRACE),
            (&mut self.helper, HELPER_GRACE),
            (&mut self.server, SERVER_GRACE),
        ] {
            let Some(child) = slot.as_mut() else { continue };
            let name = child.role().name();
            match child.stop(grace, hurry).await {
                Stopped::Already(_) => {}
                Stopped::Exited(status) if clean(status) => {}
                Stopped::Exited(status) => {
                    console::warn(&format!("the {name} ended with {status} when stopped"));
                    result = result.and(Err(LocalError::ChildDied { name, status }));
                }
                Stopped::Killed => {
                    console::warn(&format!("the {name} was killed"));
                    result = result.and(Err(LocalError::Killed(name)));
                }
            }
        }
        let _ = std::fs::remove_file(&self.config.layout.ready_file);
        console::note("stopped");
        result
    }
}

/// The server's ready file, once it has written it whole (it writes it atomically).
fn read_ready(path: &Path) -> Result<Option<Ready>, LocalError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            LocalError::Unexpected(format!("the server's ready file {}: {e}", path.display()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LocalError::io(path)(e)),
    }
}

fn remove_if_present(path: &Path) -> Result<(), LocalError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LocalError::io(path)(e)),
        _ => Ok(()),
    }
}
