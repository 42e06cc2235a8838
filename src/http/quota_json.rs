//! The admin API's quota objects (§8.7) as JSON: parsing `UserQuota` (token creation) and
//! `UserQuotaPatch` (absent = keep, `null` = reset, value = set) into the store's
//! [`QuotaOverrides`], validating the merged result, and rendering `overrides` and
//! `effective` (defaults resolved from the config).

use serde_json::{json, Map, Value};

use crate::config::rates::parse_bandwidth;
use crate::config::Config;
use crate::storage_path::StoragePath;
use crate::store::{Limit, QuotaOverrides};

/// A 422 message.
pub type Invalid = String;

fn storage(v: &Value) -> Result<Limit, Invalid> {
    match v {
        Value::String(s) if s == "unlimited" => Ok(Limit::Unlimited),
        Value::Number(n) => n
            .as_u64()
            .map(Limit::Mb)
            .ok_or_else(|| "storage_quota_mb must be a non-negative integer".to_string()),
        _ => Err("storage_quota_mb must be an integer or \"unlimited\"".into()),
    }
}

fn rate(key: &str, v: &Value) -> Result<String, Invalid> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("{key} must be a string such as \"10mb/s\" or \"unlimited\""))?;
    if s.len() > 32 {
        return Err(format!("{key} is longer than 32 characters"));
    }
    parse_bandwidth(s).map_err(|e| format!("{key}: {e}"))?;
    Ok(s.to_string())
}

fn burst(key: &str, v: &Value) -> Result<u64, Invalid> {
    v.as_u64()
        .filter(|n| *n >= 1)
        .ok_or_else(|| format!("{key} must be an integer of at least 1"))
}

fn paths(v: &Value) -> Result<Vec<String>, Invalid> {
    let list = v
        .as_array()
        .ok_or_else(|| "allowed_write_paths must be an array of paths".to_string())?;
    let mut out: Vec<String> = Vec::new();
    for p in list {
        let s = p
            .as_str()
            .ok_or_else(|| "allowed_write_paths entries must be strings".to_string())?;
        if s == "/" {
            return Err("allowed_write_paths must not contain \"/\"".into());
        }
        StoragePath::strict(s).map_err(|e| format!("allowed_write_paths: {s:?}: {e}"))?;
        if out.iter().any(|o| o == s) {
            return Err(format!("allowed_write_paths lists {s:?} twice"));
        }
        out.push(s.to_string());
    }
    Ok(out)
}

/// Applies a JSON object onto `base`: absent keys keep, `null` resets, values set.
pub fn patch(base: &QuotaOverrides, body: &Map<String, Value>) -> Result<QuotaOverrides, Invalid> {
    let mut q = base.clone();
    for (k, v) in body {
        let null = v.is_null();
        match k.as_str() {
            "storage_quota_mb" => q.storage = if null { None } else { Some(storage(v)?) },
            "rate_read" => q.rate_read = if null { None } else { Some(rate(k, v)?) },
            "rate_write" => q.rate_write = if null { None } else { Some(rate(k, v)?) },
            "rate_read_burst" => q.rate_read_burst = if null { None } else { Some(burst(k, v)?) },
            "rate_write_burst" => q.rate_write_burst = if null { None } else { Some(burst(k, v)?) },
            "allowed_write_paths" => {
                q.allowed_write_paths = if null { None } else { Some(paths(v)?) }
            }
            _ => {}
        }
    }
    let explicit = |r: &Option<String>| r.as_deref().is_some_and(|s| s != "unlimited");
    if q.rate_read_burst.is_some() && !explicit(&q.rate_read) {
        return Err("rate_read_burst requires an explicit rate_read".into());
    }
    if q.rate_write_burst.is_some() && !explicit(&q.rate_write) {
        return Err("rate_write_burst requires an explicit rate_write".into());
    }
    Ok(q)
}

fn limit_json(l: Limit) -> Value {
    match l {
        Limit::Unlimited => json!("unlimited"),
        Limit::Mb(mb) => json!(mb),
    }
}

/// Only what is set.
pub fn overrides_json(q: &QuotaOverrides) -> Value {
    let mut m = Map::new();
    if let Some(l) = q.storage {
        m.insert("storage_quota_mb".into(), limit_json(l));
    }
    for (k, v) in [("rate_read", &q.rate_read), ("rate_write", &q.rate_write)] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    for (k, v) in [
        ("rate_read_burst", q.rate_read_burst),
        ("rate_write_burst", q.rate_write_burst),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    if let Some(p) = &q.allowed_write_paths {
        m.insert("allowed_write_paths".into(), json!(p));
    }
    Value::Object(m)
}

/// Overrides with the server defaults filled in.
pub fn effective_json(q: &QuotaOverrides, config: &Config) -> Value {
    let storage = q.storage.or(config.storage.default_quota_mb.map(Limit::Mb));
    let d = &config.bandwidth;
    let text = |b: &Option<crate::config::Bandwidth>| b.as_ref().map(|b| b.text.clone());
    let mut m = Map::new();
    m.insert(
        "storage_quota_mb".into(),
        storage.map_or(json!("unlimited"), limit_json),
    );
    let read = q.rate_read.clone().or(text(&d.rate_read));
    let write = q.rate_write.clone().or(text(&d.rate_write));
    m.insert(
        "rate_read".into(),
        json!(read.unwrap_or("unlimited".into())),
    );
    m.insert(
        "rate_write".into(),
        json!(write.unwrap_or("unlimited".into())),
    );
    if let Some(b) = q.rate_read_burst.or(d.rate_read_burst) {
        m.insert("rate_read_burst".into(), json!(b));
    }
    if let Some(b) = q.rate_write_burst.or(d.rate_write_burst) {
        m.insert("rate_write_burst".into(), json!(b));
    }
    if let Some(p) = &q.allowed_write_paths {
        m.insert("allowed_write_paths".into(), json!(p));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn patch_semantics() {
        let q = patch(
            &QuotaOverrides::default(),
            &obj(json!({"storage_quota_mb": 1, "rate_read": "1kb/s", "rate_read_burst": 4})),
        )
        .unwrap();
        assert_eq!(q.storage, Some(Limit::Mb(1)));
        let q2 = patch(&q, &obj(json!({"rate_write": "unlimited"}))).unwrap();
        assert_eq!(q2.storage, Some(Limit::Mb(1)));
        let q3 = patch(&q2, &obj(json!({"storage_quota_mb": null}))).unwrap();
        assert_eq!(q3.storage, None);
        assert!(patch(&q, &obj(json!({"rate_read": null}))).is_err());
        assert!(patch(&q, &obj(json!({"rate_write_burst": 2}))).is_err());
        assert!(patch(&q, &obj(json!({"allowed_write_paths": ["/"]}))).is_err());
        assert!(patch(
            &q,
            &obj(json!({"allowed_write_paths": ["/pub/a/", "/pub/a/"]}))
        )
        .is_err());
        assert!(patch(&q, &obj(json!({"storage_quota_mb": -1}))).is_err());
        assert!(patch(&q, &obj(json!({"rate_read": "fast"}))).is_err());
        let w = patch(
            &q,
            &obj(json!({"allowed_write_paths": ["/pub/tokens/", "/pub/f.json"]})),
        )
        .unwrap();
        let write_allowed = |q: &QuotaOverrides, p: &str| {
            crate::account::access::write_allowed(q, &StoragePath::strict(p).unwrap())
        };
        assert!(write_allowed(&w, "/pub/tokens/foo.json"));
        assert!(write_allowed(&w, "/pub/f.json"));
        assert!(!write_allowed(&w, "/pub/other/x"));
        assert_eq!(
            overrides_json(&w)["allowed_write_paths"],
            json!(["/pub/tokens/", "/pub/f.json"])
        );
        let c = Config::defaults();
        let e = effective_json(&QuotaOverrides::default(), &c);
        assert_eq!(
            e,
            json!({"storage_quota_mb":"unlimited","rate_read":"unlimited","rate_write":"unlimited"})
        );
    }
}
