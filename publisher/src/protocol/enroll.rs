//! Enrolment, the two requests a box makes without a token (`skycast-puller
//! enroll`): `GET /v1/ca.pem`, the CA certificate (public; the box checks its
//! fingerprint before it trusts it), and `POST /v1/enroll` with `{"code": ...}`,
//! answered with the new player's puller configuration. Wrong codes are
//! throttled per address ([`CodeThrottle`]); codes and tokens are never logged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use skycast_schema::protocol::{CA_CERT_PATH, ENROLL_PATH};

use super::{blocking, ProtocolState};
use crate::error::{PublisherError, Result};

/// An enrolment body is `{"code": "..."}`: a few dozen bytes.
const MAX_BODY_BYTES: usize = 4096;
/// Wrong codes an address may send within [`FAILURE_WINDOW`] before it waits.
pub(crate) const FREE_FAILURES: usize = 5;
/// How long a wrong code counts against its address.
pub(crate) const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered at most; past it, those with no failure in the window are forgotten.
const MAX_ADDRESSES: usize = 10_000;

pub(super) fn routes() -> Router<Arc<ProtocolState>> {
    Router::new()
        .route(CA_CERT_PATH, get(ca_pem))
        .route(ENROLL_PATH, post(enroll))
}

/// Wrong enrolment codes by address (IPv4, or IPv6 /64), in memory: each
/// attempt counts as a failure *before* its code is checked, and is forgiven
/// when the code was good, so a parallel burst cannot pass the limit. After
/// [`FREE_FAILURES`] in [`FAILURE_WINDOW`] the address gets 429 until the
/// oldest one leaves the window. 80-bit codes make guessing hopeless anyway;
/// this keeps the log and the database quiet.
#[derive(Default)]
pub(crate) struct CodeThrottle {
    failures: Mutex<HashMap<IpAddr, Vec<Instant>>>,
}

/// The throttle's key for an address: an IPv6 client owns its whole /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

impl CodeThrottle {
    /// Counts an attempt from `ip` at `now`: `Err(seconds to wait)` when it is
    /// refused (and not counted).
    pub(crate) fn begin(&self, ip: IpAddr, now: Instant) -> std::result::Result<(), u64> {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_ADDRESSES {
            map.retain(|_, times| times.iter().any(|t| now.duration_since(*t) < FAILURE_WINDOW));
        }
        let times = map.entry(address_key(ip)).or_default();
        times.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
        if times.len() >= FREE_FAILURES {
            let oldest = times.iter().min().copied().unwrap_or(now);
            let left = FAILURE_WINDOW.saturating_sub(now.duration_since(oldest));
            return Err(left.as_secs().max(1));
        }
        times.push(now);
        Ok(())
    }

    /// The attempt counted by the last [`CodeThrottle::begin`] from `ip` was a good code.
    pub(crate) fn succeeded(&self, ip: IpAddr) {
        let mut map = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(times) = map.get_mut(&address_key(ip)) {
            times.pop();
        }
    }
}

/// The CA certificate, for a box to check by its fingerprint before it trusts it.
async fn ca_pem(State(state): State<Arc<ProtocolState>>) -> Result<Response> {
    let path = state.data.ca_cert_path();
    let pem = tokio::fs::read(&path)
        .await
        .map_err(PublisherError::io("read", &path))?;
    Ok(typed(pem.into_response(), "application/x-pem-file", "no-cache"))
}

/// `resp` with its content type and cache rule.
fn typed(mut resp: Response, content_type: &'static str, cache: &'static str) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp
}

#[derive(Deserialize)]
struct EnrollBody {
    code: String,
}

/// Redeems a code: 200 with the puller configuration (TOML), or a JSON error:
/// 403 unknown, 410 used, expired or cancelled, 429 after too many wrong codes.
async fn enroll(State(state): State<Arc<ProtocolState>>, req: Request) -> Result<Response> {
    let peer = req
        .extensions()
        .get::<ConnectInfo<crate::net::PeerAddr>>()
        .map(|ConnectInfo(p)| p.0.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    if let Err(retry_after_secs) = state.codes.begin(peer, Instant::now()) {
        tracing::warn!(from = %peer, retry_after_secs, "enrolment refused: too many wrong codes");
        return Err(PublisherError::TooManyCodes { retry_after_secs });
    }
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            PublisherError::BadRequest(format!("an enrolment body is at most {MAX_BODY_BYTES} bytes"))
        })?;
    let body: EnrollBody = serde_json::from_slice(&bytes).map_err(|e| {
        PublisherError::BadRequest(format!("the body must be JSON {{\"code\": \"...\"}}: {e}"))
    })?;
    let redeeming = state.clone();
    let from = peer.to_string();
    let redeemed = blocking(move || {
        crate::enrol::redeem_code(
            &redeeming.data,
            &redeeming.db,
            &body.code,
            &from,
            chrono::Utc::now(),
        )
    })
    .await;
    match redeemed {
        Ok((enrolment, config)) => {
            state.codes.succeeded(peer);
            tracing::info!(player = %enrolment.player_id, shop = %enrolment.shop, from = %peer, "player enrolled");
            // It holds the new token: no cache keeps it.
            Ok(typed(
                config.into_response(),
                "application/toml; charset=utf-8",
                "no-store",
            ))
        }
        Err(e) => {
            if !e.status().is_server_error() {
                // The message names the player at most, never the code.
                tracing::warn!(from = %peer, reason = %e, "enrolment refused");
            }
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_waits_after_five_wrong_codes_and_others_do_not() {
        let throttle = CodeThrottle::default();
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..FREE_FAILURES {
            assert_eq!(throttle.begin(a, t0), Ok(()));
        }
        let wait = throttle.begin(a, t0).unwrap_err();
        assert!(wait > 0 && wait <= FAILURE_WINDOW.as_secs(), "{wait}");
        assert_eq!(throttle.begin("10.0.0.2".parse().unwrap(), t0), Ok(()));
        assert_eq!(
            throttle.begin(a, t0 + FAILURE_WINDOW),
            Ok(()),
            "forgotten after the window"
        );
    }

    #[test]
    fn a_good_code_is_not_a_failure_and_an_ipv6_client_owns_its_slash_64() {
        let throttle = CodeThrottle::default();
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        for _ in 0..10 {
            throttle.begin(a, t0).unwrap();
            throttle.succeeded(a);
        }
        for i in 0..FREE_FAILURES {
            let ip: IpAddr = format!("2001:db8::{:x}", i + 2).parse().unwrap();
            throttle.begin(ip, t0).unwrap();
        }
        assert!(throttle.begin("2001:db8::ffff".parse().unwrap(), t0).is_err());
    }
}
