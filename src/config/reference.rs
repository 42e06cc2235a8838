//! The reference homeserver's `config.toml` (pubky-homeserver 0.17.1), read as a layer of
//! ours: its keys that mean what one of ours means become ours before merging; keys whose
//! meaning cannot be kept are dropped with a warning when dropping them weakens nothing,
//! and stop start-up with a one-line reason when it would.
//!
//! | reference key | becomes |
//! |---|---|
//! | `admin.admin_password` | `admin.password` |
//! | `general.user_storage_quota_mb` (0 = unlimited) | `storage.default_quota_mb` unless that is set |
//! | `pkdns.user_keys_republisher_interval` (seconds) | `pkdns.user_keys_republish_interval_ms` |
//! | `logging.module_levels` `pubky_homeserver=…` | `logging.module_levels` `pubky_edge=…` |
//! | `storage.type = "file_system"` | dropped (what we do) |
//! | `general.database_url`, `pkdns.dht_relay_nodes`, `pkdns.relay_request_timeout_ms` | dropped, with a warning |
//! | another `storage.type` | refused |
//!
//! Every other key of the reference's file has the same name and meaning here, the
//! listeners' `*_client_identity` (direct or PROXY protocol) included.

use toml::{Table, Value};

/// Rewrites `layer` (read from `file`) in place; `warnings` gets what was dropped.
pub fn translate(layer: &mut Table, file: &str, warnings: &mut Vec<String>) -> Result<(), String> {
    let mut dropped = |key: &str, why: &str| warnings.push(format!("{file}: {key} ignored: {why}"));
    if let Some(pw) = take(layer, "admin", "admin_password") {
        let ours = section(layer, "admin").get("password").cloned();
        match ours {
            Some(p) if p != pw => {
                return Err(format!(
                    "{file}: admin.admin_password and admin.password differ; keep one"
                ))
            }
            _ => {
                section(layer, "admin").insert("password".into(), pw);
            }
        }
    }
    if let Some(mb) = take(layer, "general", "user_storage_quota_mb") {
        let mb = mb
            .as_integer()
            .ok_or_else(|| format!("{file}: general.user_storage_quota_mb must be a number"))?;
        // The reference's 0 is "unlimited", which is our unset.
        let storage = section(layer, "storage");
        if mb > 0 && !storage.contains_key("default_quota_mb") {
            storage.insert("default_quota_mb".into(), Value::Integer(mb));
        }
    }
    if take(layer, "general", "database_url").is_some() {
        dropped(
            "general.database_url",
            "pubky-edge keeps its data in the data directory, not PostgreSQL",
        );
    }
    if let Some(kind) = take(layer, "storage", "type") {
        if kind.as_str() != Some("file_system") {
            let kind = kind.as_str().unwrap_or("(not a string)").to_string();
            return Err(format!(
                "{file}: storage.type {kind:?} is not supported: pubky-edge stores files on \
                 its own disk (\"file_system\")"
            ));
        }
    }
    if let Some(secs) = take(layer, "pkdns", "user_keys_republisher_interval") {
        let secs = secs.as_integer().filter(|s| *s >= 0).ok_or_else(|| {
            format!("{file}: pkdns.user_keys_republisher_interval must be seconds")
        })?;
        section(layer, "pkdns").insert(
            "user_keys_republish_interval_ms".into(),
            Value::Integer(secs.saturating_mul(1000)),
        );
    }
    for key in ["dht_relay_nodes", "relay_request_timeout_ms"] {
        if take(layer, "pkdns", key).is_some() {
            dropped(
                &format!("pkdns.{key}"),
                "pubky-edge publishes and resolves through the DHT itself",
            );
        }
    }
    if let Some(Value::Array(levels)) =
        section_mut(layer, "logging").and_then(|l| l.get_mut("module_levels"))
    {
        for level in levels.iter_mut() {
            if let Some(rest) = level
                .as_str()
                .and_then(|s| s.strip_prefix("pubky_homeserver"))
            {
                *level = Value::String(format!("pubky_edge{rest}"));
            }
        }
    }
    Ok(())
}

/// Removes `section.key`, leaving an emptied section in place.
fn take(layer: &mut Table, section: &str, key: &str) -> Option<Value> {
    section_mut(layer, section)?.remove(key)
}

fn section_mut<'a>(layer: &'a mut Table, name: &str) -> Option<&'a mut Table> {
    layer.get_mut(name).and_then(Value::as_table_mut)
}

/// The table `name`, created when missing (a non-table value there is replaced, which
/// the typed config would refuse anyway).
fn section<'a>(layer: &'a mut Table, name: &str) -> &'a mut Table {
    let entry = layer
        .entry(name.to_string())
        .or_insert_with(|| Value::Table(Table::new()));
    if !entry.is_table() {
        *entry = Value::Table(Table::new());
    }
    entry.as_table_mut().expect("made a table above")
}
