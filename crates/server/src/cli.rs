//! The command line of `tether-server`: parsed in the binary's `main.rs` (or by a
//! supervisor that runs the server as one of its processes, `tether-local`), then run here.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tether_proto::SystemClock;

use crate::app;
use crate::config::{Config, Overrides, Role};

/// Tether server: pair PCs, queue signed commands to them, and keep a verifiable audit log.
///
/// Configuration comes from built-in defaults, then the TOML file given with --config,
/// then TETHER_SERVER_* environment variables (nested keys with "__", e.g.
/// TETHER_SERVER_STORE__BACKEND=mysql TETHER_SERVER_STORE__URL=mysql://root@127.0.0.1/tether),
/// then these flags. Defaults: SQLite, the embedded bus and keys under --data-dir.
///
/// Example config file:
///
///   data_dir = "/var/lib/tether"
///   listen = "0.0.0.0:8443"
///   public_url = "https://tether.lab.example:8443"
///   roles = ["api", "gateway"]   # what this process serves (both by default)
///   [store]
///   backend = "mysql"            # or "sqlite" (path = "tether.db")
///   url = "mysql://tether:secret@db:3306/tether"
///   [bus]
///   backend = "redis"            # or "embedded" (path = "bus.db")
///   url = "redis://redis:6379"
///   namespace = "tether"
///   [auth]
///   access_ttl_s = 900
///   [pairing]
///   require_approval = false
#[derive(Debug, Parser)]
#[command(version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Directory for the SQLite store, embedded bus, keystore and CA [default: ./tether-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Address for HTTPS and WSS; port 0 picks a free port [default: 127.0.0.1:8443].
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// URL clients use to reach this server (QR codes point here) [default: https://localhost:<port>].
    #[arg(long, global = true)]
    public_url: Option<String>,
    /// Write {"addr","public_url","ca_pem"} to this file once listening.
    #[arg(long, global = true)]
    ready_file: Option<PathBuf>,
    /// What this process serves: api (users), gateway (agent sessions), or both (repeat
    /// or comma-separate) [default: api,gateway]. Split roles need MySQL + Redis (+ S3).
    #[arg(long = "role", global = true, value_enum, value_delimiter = ',')]
    roles: Vec<Role>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Create an admin account (reads the password from stdin, one line).
    CreateAdmin {
        /// The admin's email.
        #[arg(long)]
        email: String,
    },
    /// Print the effective configuration (as JSON) and exit.
    PrintConfig,
    /// Bring your own CA: import it into the data dir before the first start.
    ///
    /// Without this, the first start creates a CA (an ECDSA P-384 root whose key is sealed
    /// at rest, and an ECDSA P-256 intermediate that stays online). Two ways to bring one:
    ///
    ///   --root-cert FILE --root-key FILE
    ///       Your root CA and its private key. The key is sealed into the keystore like a
    ///       created root's and is not held by the running server; it signs a new ECDSA
    ///       P-256 intermediate now.
    ///
    ///   --root-cert FILE --intermediate-cert FILE --intermediate-key FILE
    ///       Your root CA certificate alone (its key stays offline) and an intermediate CA
    ///       it signed, with the intermediate's private key. The intermediate must be ECDSA
    ///       P-256 and allow keyCertSign and cRLSign; it is used as given, so import a new
    ///       one into a fresh data dir before it expires.
    ///
    /// Files are PEM; keys are unencrypted PKCS#8 ("PRIVATE KEY") or SEC1 ("EC PRIVATE
    /// KEY"). The root must be a self-signed ECDSA P-256 or P-384 CA with keyCertSign.
    /// Refused, and no CA written, if the data dir already has a CA or what is given fails
    /// a check. Prints the root's SHA-256 fingerprint, which clients compare when they pin
    /// it.
    #[command(verbatim_doc_comment)]
    ImportCa {
        /// The root CA certificate (PEM).
        #[arg(long, value_name = "FILE")]
        root_cert: PathBuf,
        /// The root CA's private key (PEM); the server makes its own intermediate.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "intermediate_cert",
            conflicts_with_all = ["intermediate_cert", "intermediate_key"]
        )]
        root_key: Option<PathBuf>,
        /// An intermediate CA certificate the root signed (PEM), used as given.
        #[arg(long, value_name = "FILE", requires = "intermediate_key")]
        intermediate_cert: Option<PathBuf>,
        /// The intermediate's private key (PEM).
        #[arg(long, value_name = "FILE", requires = "intermediate_cert")]
        intermediate_key: Option<PathBuf>,
    },
}

/// Sends logs to stderr, filtered by `TETHER_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs a parsed command line to its exit code.
pub async fn main(args: Cli) -> ExitCode {
    let overrides = Overrides {
        data_dir: args.data_dir.clone(),
        listen: args.listen,
        public_url: args.public_url.clone(),
        ready_file: args.ready_file.clone(),
        roles: (!args.roles.is_empty()).then(|| args.roles.clone()),
    };
    let config = match Config::load(args.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::CreateAdmin { email } => create_admin(config, email).await,
        Command::ImportCa {
            root_cert,
            root_key,
            intermediate_cert,
            intermediate_key,
        } => {
            let intermediate = intermediate_cert.zip(intermediate_key);
            import_ca(&config, &root_cert, root_key.as_deref(), intermediate)
        }
        Command::PrintConfig => match serde_json::to_string_pretty(&config) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

async fn serve(config: Config) -> ExitCode {
    let running = match app::start(config, Arc::new(SystemClock)).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fingerprint = fingerprint(running.state.ca.certificates().root_der());
    println!(
        "tether-server {} listening on {} (roles: {}, store: {}, bus: {})\n  URL: {}\n  CA certificate: {}/ca.pem\n  CA fingerprint (SHA-256): {}",
        env!("CARGO_PKG_VERSION"),
        running.addr,
        running.state.config.roles_label(),
        running.state.store.backend(),
        running.state.bus.backend(),
        running.public_url,
        running.public_url,
        fingerprint,
    );
    let token = running.shutdown_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        // Not `eprintln!`: it panics when stderr is gone (a closed pipe), and this task
        // must reach the cancel whatever happened to the terminal.
        let _ = writeln!(std::io::stderr(), "shutting down");
        token.cancel();
    });
    running.wait().await;
    ExitCode::SUCCESS
}

/// The SHA-256 of a certificate, as colon-separated uppercase hex.
fn fingerprint(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn import_ca(
    config: &Config,
    root_cert: &Path,
    root_key: Option<&Path>,
    intermediate: Option<(PathBuf, PathBuf)>,
) -> ExitCode {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))
    };
    let imported = (|| {
        let root_pem = read(root_cert)?;
        let (ca, how) = match (root_key, intermediate) {
            (Some(key), _) => {
                let key_pem = read(key)?;
                let what = app::CaImport::Root {
                    cert_pem: &root_pem,
                    key_pem: &key_pem,
                };
                let ca = app::import_ca(config, Arc::new(SystemClock), what);
                (ca, "root key sealed, new intermediate signed")
            }
            (None, Some((cert, key))) => {
                let (cert_pem, key_pem) = (read(&cert)?, read(&key)?);
                let what = app::CaImport::Intermediate {
                    root_cert_pem: &root_pem,
                    cert_pem: &cert_pem,
                    key_pem: &key_pem,
                };
                let ca = app::import_ca(config, Arc::new(SystemClock), what);
                (ca, "intermediate imported, no root key")
            }
            // clap requires one of the two.
            (None, None) => return Err("give --root-key or --intermediate-cert".to_owned()),
        };
        ca.map(|ca| (ca, how)).map_err(|e| e.to_string())
    })();
    match imported {
        Ok((ca, how)) => {
            println!(
                "imported the CA into {} ({how})\n  CA fingerprint (SHA-256): {}",
                config.data_dir.join("keys").display(),
                fingerprint(ca.certificates().root_der()),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn create_admin(config: Config, email: String) -> ExitCode {
    eprintln!("password for {email} (one line on stdin):");
    let mut password = String::new();
    if std::io::stdin().lock().read_line(&mut password).is_err() {
        eprintln!("error: could not read the password");
        return ExitCode::FAILURE;
    }
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    let mut config = config;
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let running = match app::start(config, Arc::new(SystemClock)).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let req = crate::routes::accounts::RegisterRequest {
        email,
        password,
        mobile_pub: None,
    };
    let code = match tether_proto::validate::Validate::validate(&req) {
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Ok(()) => match crate::routes::accounts::create_user(
            &running.state,
            req,
            tether_store::Role::Admin,
        )
        .await
        {
            Ok(u) => {
                println!("created admin {} ({})", u.email, u.id);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    };
    running.shutdown().await;
    code
}
