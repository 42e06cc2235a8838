//! `pubky-edge`: argv → config → logging → executor → `app::start` → wait for a signal →
//! ordered stop → exit code. Subcommands `info` and `token new` work without the server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use pubky_edge::config::Config;
use pubky_edge::{app, board, identity::Identity, sd_notify, shutdown, signup_tokens};

const USAGE: &str = "\
pubky-edge — a Pubky Core homeserver for a small box at home

USAGE:
    pubky-edge [OPTIONS] [COMMAND]

COMMANDS:
    run          run the homeserver (the default)
    info         print the homeserver's public key and where its data lives
    token new    create a signup token (for signup_mode = \"token_required\")

OPTIONS:
    -c, --config FILE     configuration file (TOML), merged over the built-in defaults
    -b, --board NAME      board overlay between the defaults and --config: pi-zero,
                          pi-zero-2w, pi3, pi4, pi5, generic-arm64, qemu-virt, auto
                          (detect from the device tree) or a FILE
    -d, --data-dir DIR    data directory (default: general.data_dir, else
                          $XDG_DATA_HOME/pubky-edge or ~/.local/share/pubky-edge)
    -h, --help            print this help
    -V, --version         print the version
";

struct Args {
    config: Option<PathBuf>,
    board: Option<String>,
    data_dir: Option<PathBuf>,
    command: Vec<String>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        config: None,
        board: None,
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
            "-b" | "--board" => args.board = Some(value("--board")?),
            s if s.starts_with("--board=") => args.board = Some(s[8..].into()),
            "-d" | "--data-dir" => args.data_dir = Some(value("--data-dir")?.into()),
            s if s.starts_with("--config=") => args.config = Some(s[9..].into()),
            s if s.starts_with("--data-dir=") => args.data_dir = Some(s[11..].into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s} (see --help)")),
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
    let overlay = match &args.board {
        Some(b) => board::resolve(b).map_err(anyhow::Error::msg)?,
        None => None,
    };
    let overlay_layer = overlay.as_ref().map(|o| (o.name.as_str(), o.toml.as_str()));
    let loaded = Config::load(args.config.as_deref(), overlay_layer).map_err(anyhow::Error::msg)?;
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
            if let Some(o) = &overlay {
                tracing::info!(overlay = %o.name, "board overlay applied");
            }
            run(config, data_dir)
        }
        ["info"] => {
            app::prepare_data_dir(&data_dir)?;
            let id = Identity::load_or_create(&data_dir)?;
            println!("public key:  {}", id.public_key());
            println!("data dir:    {}", data_dir.display());
            println!("http:        {}", config.drive.icann_listen_socket);
            if let Some(o) = &overlay {
                println!("board:       {}", o.name);
            }
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
        other => anyhow::bail!("unknown command `{}` (see --help)", other.join(" ")),
    }
}

fn run(config: Config, data_dir: PathBuf) -> anyhow::Result<()> {
    let ex = Arc::new(smol::Executor::new());
    let threads = config.worker_threads();
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
        // Listeners are bound: tell systemd (Type=notify) and keep its watchdog fed.
        sd_notify::notify("READY=1");
        let _watchdog =
            sd_notify::watchdog_interval().map(|every| ex.spawn(sd_notify::watchdog(every)));
        signals.await;
        tracing::info!("shutting down");
        sd_notify::notify("STOPPING=1");
        running.stop().await
    }));
    drop(stop_tx);
    for w in workers {
        let _ = w.join();
    }
    result
}
