//! Invite tokens: roundtrip, expiry, forgery.

use super::*;
use confab_net::{InviteError, InviteToken};

fn addrs() -> Vec<Multiaddr> {
    vec![
        "/ip4/192.0.2.7/tcp/7700".parse().expect("addr"),
        "/dns4/chat.example.org/tcp/7700".parse().expect("addr"),
    ]
}

#[test]
fn roundtrip() {
    let token = InviteToken::issue(&seed(71), &addrs(), 2_000_000_000).expect("issue");
    let text = token.encode();
    assert!(text.starts_with(confab_net::invite::TEXT_PREFIX));
    assert!(text.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{text}");
    let verified = InviteToken::verify(&text, 1_900_000_000).expect("verify");
    assert_eq!(verified, token);
    assert_eq!(verified.peer_id(), confab_net::peer_id_of(&org_key(71)).expect("peer"));
    assert_eq!(verified.org_key(), org_key(71));
    assert_eq!(verified.addrs(), addrs().as_slice());
    assert_eq!(verified.expires_at(), 2_000_000_000);
    // Surrounding whitespace from copy-paste is fine.
    assert!(InviteToken::verify(&format!("  {text}\n"), 0).is_ok());
}

#[test]
fn own_p2p_suffix_is_stripped_and_foreign_refused() {
    let me = confab_net::peer_id_of(&org_key(72)).expect("peer");
    let with_p2p: Multiaddr = format!("/ip4/192.0.2.7/tcp/7700/p2p/{me}").parse().expect("addr");
    let token = InviteToken::issue(&seed(72), &[with_p2p], 10).expect("issue");
    assert_eq!(token.addrs()[0].to_string(), "/ip4/192.0.2.7/tcp/7700");
    let other = confab_net::peer_id_of(&org_key(73)).expect("peer");
    let foreign: Multiaddr = format!("/ip4/192.0.2.7/tcp/7700/p2p/{other}").parse().expect("addr");
    assert_eq!(InviteToken::issue(&seed(72), &[foreign], 10), Err(InviteError::ForeignAddress));
}

#[test]
fn expired_token_rejected() {
    let token = InviteToken::issue(&seed(74), &addrs(), 1_000).expect("issue").encode();
    assert!(InviteToken::verify(&token, 999).is_ok());
    assert_eq!(
        InviteToken::verify(&token, 1_000),
        Err(InviteError::Expired { expired_at: 1_000, now: 1_000 })
    );
}

#[test]
fn forged_tokens_rejected() {
    let token = InviteToken::issue(&seed(75), &addrs(), 2_000_000_000).expect("issue");
    let mut bytes = token.to_bytes();
    // Change the expiry (bytes 37..45) without re-signing.
    bytes[44] ^= 1;
    let text = format!(
        "{}{}",
        confab_net::invite::TEXT_PREFIX,
        data_encoding::BASE64URL_NOPAD.encode(&bytes)
    );
    assert_eq!(InviteToken::verify(&text, 0), Err(InviteError::BadSignature));

    // Another organisation's key with the original signature.
    let mut bytes = token.to_bytes();
    bytes[5..37].copy_from_slice(&org_key(76));
    let text = format!(
        "{}{}",
        confab_net::invite::TEXT_PREFIX,
        data_encoding::BASE64URL_NOPAD.encode(&bytes)
    );
    assert_eq!(InviteToken::verify(&text, 0), Err(InviteError::BadSignature));

    // A signature over the same bytes in another domain does not verify.
    let mut bytes = token.to_bytes();
    let body_len = bytes.len() - 64;
    let mut other_domain = b"confab/v1/signed-change\0".to_vec();
    other_domain.extend_from_slice(&bytes[..body_len]);
    let sig = ed25519_dalek::Signer::sign(
        &ed25519_dalek::SigningKey::from_bytes(&seed(75)),
        &other_domain,
    );
    bytes[body_len..].copy_from_slice(&sig.to_bytes());
    let text = format!(
        "{}{}",
        confab_net::invite::TEXT_PREFIX,
        data_encoding::BASE64URL_NOPAD.encode(&bytes)
    );
    assert_eq!(InviteToken::verify(&text, 0), Err(InviteError::BadSignature));

    // Garbage, truncation and trailing bytes.
    assert!(matches!(InviteToken::verify("hello", 0), Err(InviteError::Malformed(_))));
    let full = token.to_bytes();
    for cut in [0, 4, 5, 37, 45, full.len() - 1] {
        let text = format!(
            "{}{}",
            confab_net::invite::TEXT_PREFIX,
            data_encoding::BASE64URL_NOPAD.encode(&full[..cut])
        );
        assert!(InviteToken::verify(&text, 0).is_err(), "cut at {cut}");
    }
    let mut long = full.clone();
    long.push(0);
    let text = format!(
        "{}{}",
        confab_net::invite::TEXT_PREFIX,
        data_encoding::BASE64URL_NOPAD.encode(&long)
    );
    assert_eq!(InviteToken::verify(&text, 0), Err(InviteError::Malformed("trailing bytes")));
}

#[test]
fn address_limits() {
    let many = vec![addrs()[0].clone(); confab_net::invite::MAX_ADDRS + 1];
    assert!(matches!(InviteToken::issue(&seed(77), &many, 10), Err(InviteError::Limit(_))));
}
