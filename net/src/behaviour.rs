//! The composed network behaviour. The consent gate is the first field, so it decides first on
//! every connection.

use libp2p::swarm::NetworkBehaviour;
use libp2p::{identify, ping, request_response};

use crate::catchup::CatchupCodec;
use crate::consent::Consent;
use crate::media::MediaCodec;
use crate::members::MemberGossip;

#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude")]
pub(crate) struct Behaviour {
    pub(crate) consent: Consent,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) gossip: MemberGossip,
    pub(crate) catchup: request_response::Behaviour<CatchupCodec>,
    pub(crate) media: request_response::Behaviour<MediaCodec>,
}
