//! What `info` prints of the last DHT publish (the reachability report itself is
//! `announce::reachability::report`).

use crate::announce::PublishStatus;
use crate::config::Config;

/// The outcome of the last publish of the homeserver record, from `announce.json`.
pub fn print_publish_status(config: &Config, data_dir: &std::path::Path) {
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
            crate::clock::rfc3339(ok),
            st.stored_at_nodes
        ),
        (Some(e), ok) => {
            println!(
                "dht publish: FAILED at {} ({addr}): {e}",
                crate::clock::rfc3339(st.last_attempt_secs)
            );
            if let Some(ok) = ok {
                println!("             last success {}", crate::clock::rfc3339(ok));
            }
        }
        (None, None) => println!("dht publish: not attempted yet"),
    }
}
