//! What each form of a signed-in owner does (the CSRF token is already checked): create and
//! revoke invitations, disable, enable, set a quota, delete a person's data, change the
//! password, sign browsers out. A refused form shows its page again with the reason.

use std::sync::Arc;

use hyper::{Response, StatusCode};

use super::frame::short;
use super::pages::{invites, people, settings};
use super::{redirect, signed_out, Form, Visit};
use crate::account::owner::ClaimError;
use crate::account::owner_sessions::OwnerSession;
use crate::http::body::Body;
use crate::http::App;
use crate::pubkey::PublicKey;
use crate::store::{Limit, QuotaOverrides};

/// The quota field: empty = the box's default, else whole MB.
pub(super) fn quota_field(v: Option<&str>) -> Result<Option<Limit>, String> {
    match v.map(str::trim).unwrap_or("") {
        "" => Ok(None),
        s => match s.parse::<u64>() {
            Ok(mb) if (1..=1 << 30).contains(&mb) => Ok(Some(Limit::Mb(mb))),
            _ => Err(format!(
                "The quota must be a whole number of MB (1 or more), not {s:?}."
            )),
        },
    }
}

fn user_of(app: &App, form: &Form) -> Option<PublicKey> {
    let pk = PublicKey::parse_z32(form.get("user")?).ok()?;
    app.store.user(&pk).ok().flatten().map(|_| pk)
}

/// A state-changing form of a signed-in owner (the CSRF token is already checked).
pub async fn act(
    app: &Arc<App>,
    session: &OwnerSession,
    visit: &Visit,
    path: &str,
    form: &Form,
    now: u64,
) -> Response<Body> {
    match path {
        // A standby's accounts and invitations are the primary's, copied every few seconds.
        "/invites" | "/invites/revoke" | "/people/state" | "/people/quota" | "/people/delete"
            if app.role.refusal().is_some() =>
        {
            redirect("/?n=standby")
        }
        "/updates/now" if !super::home::can_look(app) => redirect("/?n=update-off"),
        "/updates/now" => {
            tracing::info!("the owner asked for an update now");
            crate::update::launch::UPDATE_NOW.raise();
            redirect("/?n=update-now")
        }
        "/updates/hold" => {
            let slots = crate::update::slots::Slots::at(&app.data_dir);
            let resume = form.get("do") == Some("resume");
            let hold = crate::update::slots::Hold {
                since_secs: now,
                reason: "held from the dashboard".into(),
            };
            match slots.set_hold((!resume).then_some(&hold)) {
                Ok(()) => redirect(if resume { "/?n=resumed" } else { "/?n=held" }),
                Err(e) => super::plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("The choice was not saved: {e:#}."),
                ),
            }
        }
        "/logout" => {
            app.owner_sessions.end(&session.id);
            signed_out("/login")
        }
        "/invites" => {
            let storage = match quota_field(form.get("quota_mb")) {
                Ok(s) => s,
                Err(e) => return invites(app, session, visit, Some(e)),
            };
            let q = QuotaOverrides {
                storage,
                ..Default::default()
            };
            let token = crate::auth::secrets::new_signup_token();
            match app
                .store
                .create_signup_token_with_quota(&token, &q, now)
                .await
            {
                Ok(()) => {
                    tracing::info!("the owner created an invitation");
                    redirect(&format!("/invites?new={token}"))
                }
                Err(e) => invites(
                    app,
                    session,
                    visit,
                    Some(format!("The invitation was not saved: {e}.")),
                ),
            }
        }
        "/invites/revoke" => match app
            .store
            .revoke_signup_token(form.get("token").unwrap_or(""))
            .await
        {
            Ok(()) => redirect("/invites?n=revoked"),
            Err(e) => invites(app, session, visit, Some(format!("Not revoked: {e}."))),
        },
        "/people/state" => {
            let Some(pk) = user_of(app, form) else {
                return people(app, session, visit, Some("No such person.".into()));
            };
            let disable = form.get("do") == Some("disable");
            match app.store.set_disabled(&pk, disable).await {
                Ok(()) => {
                    tracing::info!(user = %pk, disabled = disable, "the owner changed an account");
                    redirect(if disable {
                        "/people?n=disable"
                    } else {
                        "/people?n=enable"
                    })
                }
                Err(e) => people(app, session, visit, Some(format!("Not changed: {e}."))),
            }
        }
        "/people/quota" => {
            let Some(pk) = user_of(app, form) else {
                return people(app, session, visit, Some("No such person.".into()));
            };
            let storage = match quota_field(form.get("quota_mb")) {
                Ok(s) => s,
                Err(e) => return people(app, session, visit, Some(e)),
            };
            let mut q = app.store.quota_overrides(&pk).unwrap_or_default();
            q.storage = storage;
            match app.store.set_quota_overrides(&pk, &q).await {
                Ok(()) => redirect("/people?n=quota"),
                Err(e) => people(app, session, visit, Some(format!("Not changed: {e}."))),
            }
        }
        "/people/delete" => {
            let Some(pk) = user_of(app, form) else {
                return people(app, session, visit, Some("No such person.".into()));
            };
            if form.get("confirm").map(str::trim) != Some(short(&pk).as_str()) {
                return people(
                    app,
                    session,
                    visit,
                    Some(format!(
                        "Nothing was deleted: the confirmation did not match {}.",
                        short(&pk)
                    )),
                );
            }
            match crate::account::people::delete_data(&app.store, &pk, crate::clock::now_micros())
                .await
            {
                Ok(_) => redirect("/people?n=deleted"),
                Err(e) => people(app, session, visit, Some(format!("Deleting stopped: {e}."))),
            }
        }
        "/settings/password" => {
            let (cur, new) = (
                form.get("current").unwrap_or(""),
                form.get("new").unwrap_or(""),
            );
            // Hashing takes about a second on a small board: off the executor.
            let owner = app.owner.clone();
            let (peer, cur, new) = (visit.peer, cur.to_string(), new.to_string());
            let changed =
                smol::unblock(move || owner.change(peer, &cur, &new, std::time::Instant::now()))
                    .await;
            match changed {
                Ok(()) => {
                    app.owner_sessions.end_all();
                    signed_out("/login")
                }
                Err(e) => {
                    let text = match e {
                        ClaimError::Wrong => "The current password is not right.".to_string(),
                        other => format!(
                            "{}.",
                            super::sign_in::capitalised(&other.to_string()).trim_end_matches('.')
                        ),
                    };
                    settings(app, session, visit, Some(text))
                }
            }
        }
        "/settings/end" => match form.get("id") {
            Some("all") => {
                app.owner_sessions.end_all();
                signed_out("/login")
            }
            Some(id) if id == session.id => {
                app.owner_sessions.end(id);
                signed_out("/login")
            }
            Some(id) => {
                app.owner_sessions.end(id);
                redirect("/settings?n=ended")
            }
            None => redirect("/settings"),
        },
        _ => crate::http::response::text(StatusCode::NOT_FOUND, "No such form."),
    }
}
