//! The webhook signature: `X-Skycast-Signature: sha256=<hex>`, the HMAC-SHA256
//! of the exact body bytes keyed with the hook's secret (its text as printed).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::db::WebhookSecret;

/// The header that carries [`signature`].
pub const SIGNATURE_HEADER: &str = "x-skycast-signature";

/// `sha256=<lowercase hex of HMAC-SHA256(secret, body)>`.
pub fn signature(secret: &WebhookSecret, body: &[u8]) -> String {
    // HMAC takes a key of any length (longer ones are hashed first), so this cannot fail.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC accepts any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_test_case_2() {
        // RFC 4231, 4.3: key "Jefe", data "what do ya want for nothing?".
        let secret = WebhookSecret::new("Jefe".into());
        assert_eq!(
            signature(&secret, b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn any_change_of_body_or_secret_changes_the_signature() {
        let a = WebhookSecret::new("skw_a".into());
        let b = WebhookSecret::new("skw_b".into());
        assert_ne!(signature(&a, b"{}"), signature(&b, b"{}"));
        assert_ne!(signature(&a, b"{}"), signature(&a, b"{} "));
    }
}
