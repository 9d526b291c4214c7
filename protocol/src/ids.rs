//! Validated identifier newtypes. Each has exactly one text spelling; parsing rejects the rest.

use std::fmt;
use std::str::FromStr;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must be {expected}")]
    Malformed { kind: &'static str, expected: &'static str },
}

pub(crate) fn malformed(kind: &'static str, expected: &'static str) -> IdError {
    IdError::Malformed { kind, expected }
}

macro_rules! string_serde {
    ($ty:ty) => {
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                let text = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(
                    deserializer,
                )?;
                text.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

macro_rules! fixed_bytes_id {
    ($(#[$meta:meta])* $name:ident, $len:expr, $kind:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; $len]);

        impl $name {
            pub const LEN: usize = $len;
            pub const TEXT_LEN: usize = $crate::encoding::encoded_len($len);

            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Parses the raw byte form; `None` unless exactly the right length.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; $len]>::try_from(bytes).ok().map(Self)
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&$crate::encoding::encode(&self.0))
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::ids::IdError;
            fn from_str(text: &str) -> Result<Self, $crate::ids::IdError> {
                let expected = concat!($kind, " (lowercase base32hex)");
                if text.len() != Self::TEXT_LEN {
                    return Err($crate::ids::malformed(stringify!($name), expected));
                }
                let bytes = $crate::encoding::decode(text).ok_or_else(|| $crate::ids::malformed(stringify!($name), expected))?;
                Self::from_slice(&bytes).ok_or_else(|| $crate::ids::malformed(stringify!($name), expected))
            }
        }

        $crate::ids::string_serde!($name);
    };
}

/// Shared with other modules that define fixed-size ids (e.g. `relay`).
pub(crate) use {fixed_bytes_id, string_serde};

fixed_bytes_id!(
    /// An organisation: its ed25519 public key, which is also its libp2p identity.
    OrgId, 32, "52 characters"
);
fixed_bytes_id!(
    /// A chat (channel or DM): 16 bytes handed in by the creating node (random, or derived from
    /// the set of DM participants).
    ChatId, 16, "26 characters"
);
fixed_bytes_id!(
    /// A device: 16 random bytes chosen when the device registers.
    DeviceId, 16, "26 characters"
);
fixed_bytes_id!(
    /// A message, unique and sortable by time within a chat.
    ///
    /// Layout (20 bytes): 6 bytes milliseconds since the Unix epoch (big-endian), 2 bytes hybrid
    /// logical clock counter, 8 bytes of the author organisation's id (so two organisations can
    /// never mint the same id, which validation checks), 4 bytes handed in by the writer to tell
    /// apart ids minted by different processes of the same organisation.
    MessageId, 20, "32 characters"
);

impl MessageId {
    /// Builds an id from its parts. `counter` breaks ties within one millisecond.
    pub fn new(time: crate::HlcTime, org: &OrgId, unique: [u8; 4]) -> Self {
        let mut bytes = [0u8; 20];
        let ms = time.ms.to_be_bytes();
        bytes[0..6].copy_from_slice(&ms[2..8]);
        bytes[6..8].copy_from_slice(&time.counter.to_be_bytes());
        bytes[8..16].copy_from_slice(&org.as_bytes()[0..8]);
        bytes[16..20].copy_from_slice(&unique);
        Self(bytes)
    }

    /// Milliseconds since the Unix epoch at which the message was created (by its author's clock).
    pub fn time_ms(&self) -> u64 {
        let mut ms = [0u8; 8];
        ms[2..8].copy_from_slice(&self.0[0..6]);
        u64::from_be_bytes(ms)
    }

    /// The hybrid logical clock time the id was minted at.
    pub fn hlc_time(&self) -> crate::HlcTime {
        crate::HlcTime { ms: self.time_ms(), counter: u16::from_be_bytes([self.0[6], self.0[7]]) }
    }

    /// True if the id carries this organisation's tag.
    pub fn minted_by(&self, org: &OrgId) -> bool {
        self.0[8..16] == org.as_bytes()[0..8]
    }

    /// The smallest id at or after `ms`; useful as a range bound.
    pub fn lower_bound_at_ms(ms: u64) -> Self {
        let mut bytes = [0u8; 20];
        bytes[0..6].copy_from_slice(&ms.to_be_bytes()[2..8]);
        Self(bytes)
    }
}

/// The local part of a user id: 1–32 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn validate_localpart(text: &str) -> Result<(), IdError> {
    let expected = "1-32 characters of a-z 0-9 . _ -, starting with a letter or digit";
    let ok = (1..=32).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && text.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(malformed("username", expected))
    }
}

/// An organisation's human label (`acme`): 1–63 of `a-z 0-9 -`, starting with a letter or
/// digit. It is bound to an [`OrgId`] by the node that owns it and never trusted on its own.
pub fn validate_org_name(text: &str) -> Result<(), IdError> {
    let expected = "1-63 characters of a-z 0-9 -, starting with a letter or digit";
    let ok = (1..=63).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && text.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(malformed("organisation name", expected))
    }
}

/// A user: `localpart@org`, owned by exactly one organisation's node.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId {
    text: String,
    at: usize,
}

impl UserId {
    pub fn new(localpart: &str, org_name: &str) -> Result<Self, IdError> {
        validate_localpart(localpart)?;
        validate_org_name(org_name)?;
        Ok(Self { text: format!("{localpart}@{org_name}"), at: localpart.len() })
    }

    pub fn localpart(&self) -> &str {
        &self.text[..self.at]
    }

    pub fn org_name(&self) -> &str {
        &self.text[self.at + 1..]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.text)
    }
}

impl FromStr for UserId {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        let (local, org) =
            text.split_once('@').ok_or_else(|| malformed("user id", "localpart@org"))?;
        Self::new(local, org)
    }
}

string_serde!(UserId);

/// Which document of a chat: the control document or one of the history buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DocKind {
    Control,
    /// History bucket number, from 1.
    Bucket(u32),
}

/// A channel document: chat id plus which document of the chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocId {
    pub chat: ChatId,
    pub kind: DocKind,
}

impl DocId {
    pub const LEN: usize = 20;

    pub fn control(chat: ChatId) -> Self {
        Self { chat, kind: DocKind::Control }
    }

    pub fn bucket(chat: ChatId, number: u32) -> Self {
        Self { chat, kind: DocKind::Bucket(number) }
    }

    /// The document index on the wire: 0 for the control document, the bucket number otherwise.
    pub fn index(&self) -> u32 {
        match self.kind {
            DocKind::Control => 0,
            DocKind::Bucket(number) => number,
        }
    }

    /// 16 bytes chat id, then the index as big-endian u32.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut bytes = [0u8; Self::LEN];
        bytes[..16].copy_from_slice(self.chat.as_bytes());
        bytes[16..].copy_from_slice(&self.index().to_be_bytes());
        bytes
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::LEN {
            return None;
        }
        let chat = ChatId::from_slice(&bytes[..16])?;
        let index = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
        Some(Self::from_index(chat, index))
    }

    pub fn from_index(chat: ChatId, index: u32) -> Self {
        if index == 0 {
            Self::control(chat)
        } else {
            Self::bucket(chat, index)
        }
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            DocKind::Control => write!(f, "{}/control", self.chat),
            DocKind::Bucket(number) => write!(f, "{}/b{}", self.chat, number),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        let user: UserId = "alice@acme".parse().unwrap();
        assert_eq!(user.localpart(), "alice");
        assert_eq!(user.org_name(), "acme");
        for bad in ["", "alice", "@acme", "alice@", "Alice@acme", "al ice@acme", "-a@acme", "a@b@c"]
        {
            assert!(bad.parse::<UserId>().is_err(), "{bad:?} must be rejected");
        }
        assert!(UserId::new(&"a".repeat(33), "acme").is_err());
        assert_eq!(serde_json::to_string(&user).unwrap(), "\"alice@acme\"");
    }

    #[test]
    fn message_ids_sort_by_time_and_carry_the_org() {
        let org = OrgId::from_bytes([7; 32]);
        let a = MessageId::new(crate::HlcTime { ms: 1_000, counter: 5 }, &org, [9; 4]);
        let b = MessageId::new(crate::HlcTime { ms: 1_000, counter: 6 }, &org, [0; 4]);
        let c = MessageId::new(crate::HlcTime { ms: 1_001, counter: 0 }, &org, [0; 4]);
        assert!(a < b && b < c);
        assert!(a.to_string() < b.to_string() && b.to_string() < c.to_string());
        assert_eq!(a.time_ms(), 1_000);
        assert_eq!(a.hlc_time().counter, 5);
        assert!(a.minted_by(&org));
        assert!(!a.minted_by(&OrgId::from_bytes([8; 32])));
        assert_eq!(a.to_string().parse::<MessageId>().unwrap(), a);
        assert_eq!(a.to_string().len(), 32);
    }

    #[test]
    fn every_id_has_exactly_one_spelling() {
        let org = OrgId::from_bytes([0xff; 32]);
        let text = org.to_string();
        assert_eq!(text.parse::<OrgId>(), Ok(org));
        // The last character carries 4 padding bits; any non-zero padding is another spelling.
        let mut other = text.clone();
        other.pop();
        other.push('v');
        assert!(other.parse::<OrgId>().is_err());
        assert!(text.to_uppercase().parse::<OrgId>().is_err());
        assert!(text[1..].parse::<OrgId>().is_err());
        assert!(format!("{text}0").parse::<OrgId>().is_err());
        let chat = ChatId::from_bytes([0; 16]);
        assert_eq!(chat.to_string(), "0".repeat(26));
        assert!(format!("{}1", "0".repeat(25)).parse::<ChatId>().is_err());
        assert!(serde_json::from_str::<OrgId>("\"nope\"").is_err());
        assert_eq!(serde_json::to_string(&chat).unwrap(), format!("\"{chat}\""));
    }

    #[test]
    fn doc_ids_round_trip() {
        let chat = ChatId::from_bytes([3; 16]);
        for doc in [DocId::control(chat), DocId::bucket(chat, 1), DocId::bucket(chat, u32::MAX)] {
            assert_eq!(DocId::from_bytes(&doc.to_bytes()), Some(doc));
        }
        assert_eq!(DocId::from_bytes(&[0; 19]), None);
    }
}
