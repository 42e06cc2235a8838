//! `pubky-edge`: argv → config → logging → executor → `app::start` → wait for a signal →
//! ordered stop → exit code. Subcommands `info` and `token new` work without the server.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use pubky_edge::announce::reachability::{self, Resolution};
use pubky_edge::announce::PublishStatus;
use pubky_edge::config::Config;
use pubky_edge::{account, app, identity::Identity, sd_notify, shutdown};

const USAGE: &str = "\
pubky-edge — a Pubky Core homeserver for a small box at home

USAGE:
    pubky-edge [OPTIONS] [COMMAND]

COMMANDS:
    run          run the homeserver (the default)
    info         print the homeserver's public key and where its data lives
    status       reachability: LAN addresses, mDNS name, UPnP mapping, external address,
                 CGNAT, last DHT publish and whether the record resolves to this device
    token new    create a signup token (for signup_mode = \"token_required\")
    check        verify the stored data offline (stop the server first): every file has
                 its body, blob files match their hashes and reference counts, no orphan
                 blob is left and each user's quota usage equals the sum of their files;
                 exits 1 and lists the problems if any is found
    testnet      run a local development network on loopback: a small Mainline DHT
                 (bootstrap 127.0.0.1:6881), a pkarr relay (127.0.0.1:15411) and this
                 homeserver (HTTP 6286, PubkyTLS 6287), as the SDKs' `testnet()` expects
    admin …      operate the running server through its admin API (`admin help`)

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
    pubky_edge::store::recovery::install_panic_note();
    let Some(args) = parse_args().map_err(anyhow::Error::msg)? else {
        return Ok(());
    };
    if args.command.first().map(String::as_str) == Some("testnet") {
        return testnet(&args);
    }
    let overlay = match &args.board {
        Some(b) => pubky_edge::config::board::resolve(b).map_err(anyhow::Error::msg)?,
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
            run(config, data_dir, |_| Box::pin(async { Ok(()) }))
        }
        ["info"] => {
            app::prepare_data_dir(&data_dir)?;
            let id = Identity::load_or_create(&data_dir)?;
            println!("public key:  {}", id.public_key());
            println!("data dir:    {}", data_dir.display());
            println!("http:        {}", config.drive.icann_listen_socket);
            println!("pubky tls:   {}", config.drive.pubky_listen_socket);
            if config.pkarr_relay.enabled {
                println!("pkarr relay: /pkarr/<key> on the http listener");
            }
            print_publish_status(&config, &data_dir);
            let not_checked = Resolution::NotChecked("see `pubky-edge status`".into());
            for line in reachability::report(&config, &data_dir, &not_checked, false) {
                println!("{line}");
            }
            if let Some(o) = &overlay {
                println!("board:       {}", o.name);
            }
            for w in &loaded.warnings {
                println!("warning:     {w}");
            }
            Ok(())
        }
        ["status"] => {
            app::prepare_data_dir(&data_dir)?;
            let key = Identity::load_or_create(&data_dir)?.public_key();
            println!("public key:    {key}");
            let timeout = std::time::Duration::from_secs(15);
            let resolution = smol::block_on(reachability::resolve(&config, &key, timeout));
            for line in reachability::report(&config, &data_dir, &resolution, true) {
                println!("{line}");
            }
            Ok(())
        }
        ["token", "new"] => {
            app::prepare_data_dir(&data_dir)?;
            let token = pubky_edge::auth::token::new_signup_token();
            account::spool::enqueue(&data_dir, &token)?;
            println!("{token}");
            Ok(())
        }
        ["check"] => check(&config, &data_dir),
        ["admin", "help"] | ["admin"] => {
            print!("{}", pubky_edge::admin_client::USAGE);
            Ok(())
        }
        ["admin", rest @ ..] => pubky_edge::admin_client::run(&config, rest),
        other => anyhow::bail!("unknown command `{}` (see --help)", other.join(" ")),
    }
}

/// `pubky-edge check`: opens the store as the server would (which also sweeps what a crash
/// can leave behind) and runs its full consistency check.
fn check(config: &Config, data_dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    anyhow::ensure!(
        data_dir.join("db").is_dir(),
        "no store in {} (nothing has been stored there yet, or --data-dir is wrong)",
        data_dir.display()
    );
    let store =
        pubky_edge::store::Store::open(data_dir, app::store_config(config)).map_err(|e| {
            // sled reports a held database lock as a plain I/O error with this text.
            let hint = if e.to_string().contains("could not acquire lock") {
                " (is the server still running?)"
            } else {
                ""
            };
            anyhow::anyhow!("cannot open the store in {}{hint}: {e}", data_dir.display())
        })?;
    let report = store
        .check()
        .context("the check could not read the store")?;
    smol::block_on(store.close()).context("closing the store")?;
    println!("files:       {}", report.entries);
    println!("blob files:  {}", report.blob_files);
    for (user, used) in &report.used_bytes {
        let who = pubky_edge::pubkey::PublicKey::from_bytes(*user)
            .map_or_else(|_| "<invalid key>".to_string(), |k| k.to_string());
        println!("user {who}: {used} bytes used");
    }
    if report.problems.is_empty() {
        println!("store is consistent");
        return Ok(());
    }
    for p in &report.problems {
        println!("problem:     {p}");
    }
    anyhow::bail!(
        "{} problem(s) found in {}",
        report.problems.len(),
        data_dir.display()
    )
}

fn print_publish_status(config: &Config, data_dir: &std::path::Path) {
    if !config.pkdns.dht {
        println!("dht publish: off (pkdns.dht = false)");
        return;
    }
    let Some(st) = PublishStatus::load(data_dir) else {
        println!("dht publish: not attempted yet");
        return;
    };
    let addr = format!(
        "{}:{}",
        st.published_ip.as_deref().unwrap_or("?"),
        st.pubky_tls_port
    );
    match (&st.last_error, st.last_success_secs) {
        (None, Some(ok)) => println!(
            "dht publish: ok at {} ({addr}, stored on {} nodes)",
            pubky_edge::clock::rfc3339(ok),
            st.stored_at_nodes
        ),
        (Some(e), ok) => {
            println!(
                "dht publish: FAILED at {} ({addr}): {e}",
                pubky_edge::clock::rfc3339(st.last_attempt_secs)
            );
            if let Some(ok) = ok {
                println!(
                    "             last success {}",
                    pubky_edge::clock::rfc3339(ok)
                );
            }
        }
        (None, None) => println!("dht publish: not attempted yet"),
    }
}

/// Fixed loopback ports of the local network, the ones the SDKs' `testnet()` presets use.
const TESTNET_DHT_PORT: u16 = 6881;
const TESTNET_RELAY: &str = "127.0.0.1:15411";

fn testnet(args: &Args) -> anyhow::Result<()> {
    if args.command.len() > 1 {
        anyhow::bail!("`testnet` takes no arguments (see --help)");
    }
    // A small Mainline network on loopback whose first node holds the well-known port.
    let (nodes, first) =
        pubky_edge::announce::dht::local_testnet(TESTNET_DHT_PORT, 3).map_err(|e| {
            anyhow::anyhow!("cannot start the local DHT on UDP 127.0.0.1:{TESTNET_DHT_PORT}: {e}")
        })?;
    let bootstrap: Vec<String> = first;
    let layer = format!(
        "[drive]\nicann_listen_socket = \"127.0.0.1:6286\"\npubky_listen_socket = \"127.0.0.1:6287\"\n\
         [pkdns]\ndht = true\npublic_ip = \"127.0.0.1\"\nicann_domain = \"localhost\"\n\
         dht_request_timeout_ms = 500\npublish_retry_min_ms = 200\n\
         user_keys_republish_first_ms = 5000\nuser_keys_republish_interval_ms = 1800000\n\
         dht_bootstrap_nodes = [{}]\n\
         [pkarr_relay]\nenabled = true\nlisten_socket = \"{TESTNET_RELAY}\"\n",
        bootstrap
            .iter()
            .map(|b| format!("{b:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let user = match &args.config {
        Some(p) => Some((
            p.display().to_string(),
            std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", p.display()))?,
        )),
        None => None,
    };
    let mut layers = vec![("testnet", layer.as_str())];
    if let Some((name, text)) = &user {
        layers.push((name.as_str(), text.as_str()));
    }
    let loaded = Config::from_layers(&layers).map_err(anyhow::Error::msg)?;
    let config = loaded.config;
    let (data_dir, temporary) = match args
        .data_dir
        .clone()
        .or_else(|| Some(config.general.data_dir.clone()).filter(|d| !d.as_os_str().is_empty()))
    {
        Some(d) => (d, false),
        None => (
            std::env::temp_dir().join(format!("pubky-edge-testnet-{}", std::process::id())),
            true,
        ),
    };
    pubky_edge::logging::init(&config.logging.level);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let bootstrap_text = bootstrap.join(", ");
    let result = run(config, data_dir.clone(), move |running| {
        Box::pin(async move {
            let token = pubky_edge::auth::token::new_signup_token();
            running
                .store()
                .create_signup_token(&token, pubky_edge::clock::now_secs())
                .await
                .map_err(|e| anyhow::anyhow!("cannot create a signup token: {e}"))?;
            // Wait (bounded) for the first publish so the printed network is usable at once.
            let attempted = running.publish_attempted.listen();
            let published = running
                .publish_status
                .lock()
                .map(|s| s.last_success_secs.is_some())
                .unwrap_or(false);
            if !published {
                smol::future::or(
                    async {
                        attempted.await;
                    },
                    async {
                        smol::Timer::after(std::time::Duration::from_secs(10)).await;
                    },
                )
                .await;
            }
            println!("pubky-edge testnet: everything on loopback; Ctrl-C stops it");
            println!("  dht bootstrap:  {bootstrap_text}");
            println!("  homeserver:     {}", running.public_key);
            println!("  http (icann):   http://{}", running.icann_addr);
            println!("  pubky tls:      {}", running.pubky_addr);
            if let Some(r) = running.relay_addr {
                println!(
                    "  pkarr relay:    http://{r}  (also http://{}/pkarr)",
                    running.icann_addr
                );
            }
            println!("  signup token:   {token}");
            println!("  data dir:       {}", running.data_dir.display());
            use std::io::Write;
            let _ = std::io::stdout().flush();
            Ok(())
        })
    });
    drop(nodes);
    if temporary {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

/// What runs once the listeners are up.
type Started<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>> + 'a>>;

/// Runs the homeserver until SIGTERM/SIGINT; `started` runs once the listeners are up.
fn run(
    config: Config,
    data_dir: PathBuf,
    started: impl for<'a> FnOnce(&'a app::Running) -> Started<'a>,
) -> anyhow::Result<()> {
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
        if let Err(e) = started(&running).await {
            let _ = running.stop().await;
            return Err(e);
        }
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
