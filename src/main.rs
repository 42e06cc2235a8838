//! `pubky-edge`: argv → config → logging → executor → `app::start` → wait for a signal →
//! ordered stop → exit code. Subcommands `info` and `token new` work without the server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use pubky_edge::config::Config;
use pubky_edge::{app, identity::Identity, shutdown, signup_tokens};

const USAGE: &str = "\
pubky-edge — a Pubky Core homeserver for a small box at home

USAGE:
    pubky-edge [OPTIONS] [COMMAND]

COMMANDS:
    run          run the homeserver (the default)
    info         print the homeserver's public key and where its data lives
    token new    create a signup token (for signup_mode = \"token_required\")
    admin …      operate the running server through its admin API (`admin help`)

OPTIONS:
    -c, --config FILE     configuration file (TOML), merged over the built-in defaults
    -d, --data-dir DIR    data directory (default: general.data_dir, else
                          $XDG_DATA_HOME/pubky-edge or ~/.local/share/pubky-edge)
    -h, --help            print this help
    -V, --version         print the version
";

struct Args {
    config: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    command: Vec<String>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        config: None,
        data_dir: None,
        command: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("pubky-edge {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "-c" | "--config" => args.config = Some(value("--config")?.into()),
            "-d" | "--data-dir" => args.data_dir = Some(value("--data-dir")?.into()),
            s if s.starts_with("--config=") => args.config = Some(s[9..].into()),
            s if s.starts_with("--data-dir=") => args.data_dir = Some(s[11..].into()),
            // `admin …` subcommands take their own options.
            s if s.starts_with('-') && args.command.first().is_none_or(|c| c != "admin") => {
                return Err(format!("unknown option {s} (see --help)"))
            }
            s => args.command.push(s.to_string()),
        }
    }
    Ok(Some(args))
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pubky-edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> anyhow::Result<()> {
    let Some(args) = parse_args().map_err(anyhow::Error::msg)? else {
        return Ok(());
    };
    let loaded = Config::load(args.config.as_deref(), None).map_err(anyhow::Error::msg)?;
    let config = loaded.config;
    let data_dir = config
        .data_dir(args.data_dir.as_deref())
        .map_err(anyhow::Error::msg)?;
    let cmd: Vec<&str> = args.command.iter().map(String::as_str).collect();
    match cmd.as_slice() {
        [] | ["run"] => {
            pubky_edge::logging::init(&config.logging.level);
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            run(config, data_dir)
        }
        ["info"] => {
            app::prepare_data_dir(&data_dir)?;
            let id = Identity::load_or_create(&data_dir)?;
            println!("public key:  {}", id.public_key());
            println!("data dir:    {}", data_dir.display());
            println!("http:        {}", config.drive.icann_listen_socket);
            for w in &loaded.warnings {
                println!("warning:     {w}");
            }
            Ok(())
        }
        ["token", "new"] => {
            app::prepare_data_dir(&data_dir)?;
            let token = pubky_edge::auth::token::new_signup_token();
            signup_tokens::enqueue(&data_dir, &token)?;
            println!("{token}");
            Ok(())
        }
        ["admin", "help"] | ["admin"] => {
            print!("{}", pubky_edge::admin_client::USAGE);
            Ok(())
        }
        ["admin", rest @ ..] => pubky_edge::admin_client::run(&config, rest),
        other => anyhow::bail!("unknown command `{}` (see --help)", other.join(" ")),
    }
}

fn run(config: Config, data_dir: PathBuf) -> anyhow::Result<()> {
    let ex = Arc::new(smol::Executor::new());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let mut workers = Vec::new();
    for i in 1..threads {
        let ex = ex.clone();
        let rx = stop_rx.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || smol::block_on(ex.run(rx.recv())))?,
        );
    }
    let result = smol::block_on(ex.run(async {
        let signals = shutdown::on_signals()?;
        let running = app::start(&ex, config, data_dir).await?;
        signals.await;
        tracing::info!("shutting down");
        running.stop().await
    }));
    drop(stop_tx);
    for w in workers {
        let _ = w.join();
    }
    result
}
