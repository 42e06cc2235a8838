//! The command line: argv → a command → an exit code (0 ok, 1 failure or problems found,
//! 2 usage). `run` (the default) serves until a signal ([`serve`]); `info` and `status`
//! print what the device knows ([`report`]); `token new` drops a signup token into the
//! spool; `check` verifies a stopped store ([`check`]); `testnet` runs a local network
//! ([`testnet`]); `admin …` talks to the running server's admin API ([`admin`]).

pub mod admin;
pub mod backup;
pub mod check;
pub mod moving;
pub mod release;
pub mod report;
pub mod secret;
pub mod serve;
pub mod standby;
pub mod testnet;
pub mod update;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::announce::reachability::{self, Resolution};
use crate::config::Config;
use crate::{account, app, identity::Identity};

const USAGE: &str = "\
pubky-edge — a Pubky Core homeserver for a small box at home

USAGE:
    pubky-edge [OPTIONS] [COMMAND]

COMMANDS:
    run          run the homeserver (the default)
    info         print the homeserver's public key and where its data lives
    status       reachability: LAN addresses, mDNS name, router mapping, external address,
                 CGNAT, last DHT publish and whether the record resolves to this device
    token new    create a signup token (for signup_mode = \"token_required\")
    check        verify the stored data offline (stop the server first): every file has
                 its body, blob files match their hashes and reference counts, no orphan
                 blob is left and each user's quota usage equals the sum of their files;
                 exits 1 and lists the problems if any is found
    compact      rewrite the database into a fresh copy (stop the server first; needs free
                 space for a second copy): drops what its log keeps of old versions, and
                 the memory it keeps for them at every start
    memory-budget [--apply]
                 the memory ceiling (limits.memory_budget_mb), the one in force and the
                 swap behind it; --apply sets it as MemoryHigh= on the systemd service
                 this runs in (pubky-edge.service does, as root, before each start)
    testnet [--bind IPV4]
                 run a local development network on loopback: a small Mainline DHT
                 (bootstrap 127.0.0.1:6881), a pkarr relay (127.0.0.1:15411) and this
                 homeserver (HTTP 6286, PubkyTLS 6287), as the SDKs' `testnet()` expects;
                 --bind puts all of it on another local address (for a virtual machine
                 or a phone on a private network)
    admin …      operate the running server through its admin API (`admin help`)
    backup …     encrypted backups of the whole box, and restore (`backup help`)
    export --user <pubky> DIR
                 one user's files as a plain folder tree with a manifest (paths, hashes,
                 content types, times); works while the server runs
    import --from-webdav URL --admin-password PASSWORD
                 move a whole homeserver in from the reference homeserver's admin WebDAV
                 (copy its `secret` into the data directory first; the server stopped);
                 run again to resume
    move --recovery-file FILE --to <homeserver> [--from <homeserver>]
         [--signup-token TOKEN] [--delete-old]
                 a user moves their files to another homeserver with their own key and
                 points their record at it (runs anywhere; resumes when run again)
    release …    make and check signed releases, offline where the release key is kept
                 (`release help`)
    standby pair|promote|status
                 a second box that follows this one's whole store and can take over
                 (`standby help`)
    update check|download|now|hold|resume|rollback
                 look for a newer release in the channel, signed with the release key, and
                 fetch its binary (verified, not switched to)

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

pub struct Args {
    pub config: Option<PathBuf>,
    pub board: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub command: Vec<String>,
}

/// Parses the arguments after the program name; `None` when `--help` or `--version` was
/// answered.
pub fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        config: None,
        board: None,
        data_dir: None,
        command: Vec::new(),
    };
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        // `release …` reads no config or data directory, and its `--version` names the
        // release: everything after it is its own.
        if args.command.first().is_some_and(|c| c == "release") {
            args.command.push(a);
            continue;
        }
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
            // `admin …`, `backup …`, `export`, `import`, `memory-budget`, `move` and `testnet`
            // take their own options.
            s if s.starts_with('-')
                && args.command.first().is_none_or(|c| {
                    ![
                        "admin",
                        "backup",
                        "export",
                        "import",
                        "memory-budget",
                        "move",
                        "standby",
                        "testnet",
                    ]
                    .contains(&c.as_str())
                }) =>
            {
                return Err(format!("unknown option {s} (see --help)"))
            }
            s => args.command.push(s.to_string()),
        }
    }
    Ok(Some(args))
}

/// The whole program: parses `argv` (without the program name), runs the command and maps
/// the outcome to the exit code.
pub fn main(argv: impl IntoIterator<Item = String>) -> ExitCode {
    crate::store::recovery::install_panic_note();
    let args = match parse_args(argv) {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pubky-edge: {e}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) if crate::update::launch::RESTART.is_raised() => {
            ExitCode::from(crate::update::launch::EXIT_RESTART)
        }
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pubky-edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command.
fn run(args: Args) -> anyhow::Result<()> {
    match args.command.first().map(String::as_str) {
        Some("testnet") => return testnet::run(&args),
        Some("release") => {
            let rest: Vec<&str> = args.command[1..].iter().map(String::as_str).collect();
            return release::run(&rest);
        }
        _ => {}
    }
    let overlay = match &args.board {
        Some(b) => crate::config::board::resolve(b).map_err(anyhow::Error::msg)?,
        None => None,
    };
    let overlay_layer = overlay.as_ref().map(|o| (o.name.as_str(), o.toml.as_str()));
    let mut loaded =
        Config::load(args.config.as_deref(), overlay_layer).map_err(anyhow::Error::msg)?;
    let data_dir = loaded
        .config
        .data_dir(args.data_dir.as_deref())
        .map_err(anyhow::Error::msg)?;
    // A data directory that brings its own config.toml (as the reference homeserver's
    // does) is read with it, unless --config names another file.
    let in_dir = data_dir.join("config.toml");
    let config_in_dir = args.config.is_none() && in_dir.is_file();
    if config_in_dir {
        loaded = Config::load(Some(&in_dir), overlay_layer).map_err(anyhow::Error::msg)?;
    }
    let config_file = match (&args.config, config_in_dir) {
        (Some(f), _) => Some(f.clone()),
        (None, true) => Some(in_dir),
        (None, false) => None,
    };
    let config = loaded.config;
    let cmd: Vec<&str> = args.command.iter().map(String::as_str).collect();
    match cmd.as_slice() {
        [] | ["run"] => {
            crate::runtime::logging::init(&config.logging.filter());
            for w in &loaded.warnings {
                tracing::warn!("{w}");
            }
            if let Some(o) = &overlay {
                tracing::info!(overlay = %o.name, "board overlay applied");
            }
            if let Some(f) = &config_file {
                tracing::info!(file = %f.display(), "config file read");
            }
            app::prepare_data_dir(&data_dir)?;
            crate::update::launch::hand_over(&data_dir)?;
            serve::run(config, data_dir, |_| Box::pin(async { Ok(()) }))
        }
        ["info"] => {
            app::prepare_data_dir(&data_dir)?;
            let id = Identity::load_or_create(&data_dir)?;
            println!("public key:  {}", id.public_key());
            println!("data dir:    {}", data_dir.display());
            if let Some(f) = &config_file {
                println!("config:      {}", f.display());
            }
            println!("http:        {}", config.drive.icann_listen_socket);
            println!("pubky tls:   {}", config.drive.pubky_listen_socket);
            if config.pkarr_relay.enabled {
                println!("pkarr relay: /pkarr/<key> on the http listener");
            }
            println!("{}", report::dashboard_line(&config, &data_dir));
            report::print_publish_status(&config, &data_dir);
            let not_checked = Resolution::NotChecked("see `pubky-edge status`".into());
            for line in report::reachability(&config, &data_dir, &not_checked, false) {
                println!("{line}");
            }
            for line in backup::status_lines(&data_dir, crate::clock::now_secs()) {
                println!("{line}");
            }
            for line in update::status_lines(&config, &data_dir) {
                println!("{line}");
            }
            for line in standby::status_lines(&data_dir, crate::clock::now_secs()) {
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
            for line in report::reachability(&config, &data_dir, &resolution, true) {
                println!("{line}");
            }
            for line in backup::status_lines(&data_dir, crate::clock::now_secs()) {
                println!("{line}");
            }
            for line in update::status_lines(&config, &data_dir) {
                println!("{line}");
            }
            for line in standby::status_lines(&data_dir, crate::clock::now_secs()) {
                println!("{line}");
            }
            Ok(())
        }
        ["token", "new"] => {
            app::prepare_data_dir(&data_dir)?;
            let token = crate::auth::secrets::new_signup_token();
            account::spool::enqueue(&data_dir, &token)?;
            println!("{token}");
            Ok(())
        }
        ["check"] => check::run(&config, &data_dir),
        ["compact"] => check::compact(&config, &data_dir),
        ["memory-budget", rest @ ..] => {
            crate::runtime::memory::command(config.limits.memory_budget_bytes, rest)
        }
        ["admin", "help"] | ["admin"] => {
            print!("{}", admin::USAGE);
            Ok(())
        }
        ["admin", rest @ ..] => admin::run(&config, &data_dir, rest),
        ["backup", rest @ ..] => backup::run(&config, config_file.as_deref(), &data_dir, rest),
        ["export", rest @ ..] => backup::export(&config, &data_dir, rest),
        ["import", rest @ ..] => moving::import(&config, &data_dir, rest),
        ["move", rest @ ..] => moving::run(&config, rest),
        ["standby", rest @ ..] => standby::run(&config, &data_dir, rest),
        ["update", rest @ ..] => {
            app::prepare_data_dir(&data_dir)?;
            update::run(&config, config_file.as_deref(), &data_dir, rest)
        }
        other => anyhow::bail!("unknown command `{}` (see --help)", other.join(" ")),
    }
}
