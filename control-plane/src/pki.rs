//! Mutual TLS on the xDS port: the CA every replica shares (kept in the store), the server
//! certificate each replica makes at start, the node certificates the admin API issues, and the
//! node a caller's certificate names.
//!
//! Who may call: only a holder of a node certificate from this CA. A certificate names one node
//! (a URI `spiffe://warden/node/<id>`), and a caller may speak only as that node: its ADS node
//! id and its lease calls must match. Envoy, in turn, accepts only a server whose certificate
//! names [`SERVER_NAME`], so a node certificate cannot pose as the control plane.

use crate::store::Store;
use crate::store::settings::{self, XdsCa};
use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde::Serialize;
use std::time::Duration;
use tonic::Status;

/// The name in every control plane's certificate; Envoy checks it, whatever address it dials.
pub const SERVER_NAME: &str = "warden-xds";
/// Where a node certificate names its node.
const NODE_URI: &str = "spiffe://warden/node/";
const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 86_400);
/// Server certificates are made afresh at every start; node certificates at every
/// `warden bootstrap`.
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 86_400);
/// The longest node id a certificate may carry.
const MAX_NODE_ID: usize = 128;

/// The CA, able to sign.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    certificate: String,
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone, Serialize)]
pub struct Issued {
    pub certificate: String,
    pub private_key: String,
}

impl Authority {
    /// The store's CA, created on the first start of the first replica. Replicas racing to
    /// create it agree on the one stored first.
    pub async fn load_or_create(store: &dyn Store) -> anyhow::Result<Authority> {
        if settings::xds_ca(store).await?.is_none() {
            let created = Self::create()?;
            if settings::insert_xds_ca(store, &created).await? {
                tracing::info!("created the xDS certificate authority");
            }
        }
        Self::from_stored(settings::xds_ca(store).await?.context("the xDS CA vanished from the store")?)
    }

    fn from_stored(stored: XdsCa) -> anyhow::Result<Authority> {
        let key = KeyPair::from_pem(&stored.private_key).context("the stored xDS CA key is corrupt")?;
        let issuer =
            Issuer::from_ca_cert_pem(&stored.certificate, key).context("the stored xDS CA certificate is corrupt")?;
        Ok(Authority { issuer, certificate: stored.certificate })
    }

    fn create() -> anyhow::Result<XdsCa> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = named("Warden xDS CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        validity(&mut params, CA_VALIDITY);
        let certificate = params.self_signed(&key)?;
        Ok(XdsCa { certificate: certificate.pem(), private_key: key.serialize_pem() })
    }

    /// The CA certificate, PEM: what both sides trust.
    pub fn certificate(&self) -> &str {
        &self.certificate
    }

    /// A certificate for this replica's xDS server.
    pub fn server(&self) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
        params.distinguished_name = named(SERVER_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A certificate for the Envoy node `node_id` (checked with [`check_node_id`]).
    pub fn node(&self, node_id: &str) -> anyhow::Result<Issued> {
        check_node_id(node_id)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = named(node_id);
        params.subject_alt_names = vec![SanType::URI(format!("{NODE_URI}{node_id}").try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> anyhow::Result<Issued> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, LEAF_VALIDITY);
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(Issued { certificate: certificate.pem(), private_key: key.serialize_pem() })
    }
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// From an hour ago (clocks drift) for `span`.
fn validity(params: &mut CertificateParams, span: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + span;
}

/// A node id a certificate may name: 1–128 of `A-Z a-z 0-9 . _ -` (a hostname, a pod name).
pub fn check_node_id(node_id: &str) -> anyhow::Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    anyhow::ensure!(
        !node_id.is_empty() && node_id.len() <= MAX_NODE_ID && node_id.chars().all(allowed),
        "a node id is 1 to {MAX_NODE_ID} letters, digits, '.', '_' or '-'"
    );
    Ok(())
}

/// Who is calling the xDS port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The node a verified certificate names.
    Node(String),
    /// Anyone: the server runs plaintext (`--insecure-xds`), and the operator has said that
    /// whoever reaches the port is trusted.
    Trusted,
}

impl Caller {
    /// The caller of `request`: from its TLS peer certificate when the server runs TLS.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
        let tls = request
            .extensions()
            .get::<tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>>();
        let Some(tls) = tls else { return Ok(Caller::Trusted) };
        let certificates = tls.peer_certs().ok_or_else(|| Status::unauthenticated("a node certificate is required"))?;
        let leaf = certificates.first().ok_or_else(|| Status::unauthenticated("a node certificate is required"))?;
        node_named(leaf).map(Caller::Node).ok_or_else(|| Status::unauthenticated("the certificate names no node"))
    }

    /// Whether this caller may speak as `node_id`.
    pub fn check(&self, node_id: &str) -> Result<(), Status> {
        match self {
            Caller::Trusted => Ok(()),
            Caller::Node(own) if own == node_id => Ok(()),
            Caller::Node(own) => {
                Err(Status::permission_denied(format!("the certificate of node '{own}' cannot speak as '{node_id}'")))
            }
        }
    }
}

/// The node a certificate's `spiffe://warden/node/<id>` URI names.
fn node_named(der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let names = certificate.subject_alternative_name().ok()??;
    names.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => uri.strip_prefix(NODE_URI).map(str::to_owned),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> Vec<u8> {
        let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        parsed.contents
    }

    #[test]
    fn a_node_certificate_names_its_node_and_a_server_certificate_none() {
        let ca = Authority::from_stored(Authority::create().unwrap()).unwrap();
        assert_eq!(node_named(&der(&ca.node("edge-1.example").unwrap().certificate)), Some("edge-1.example".into()));
        assert_eq!(node_named(&der(&ca.server().unwrap().certificate)), None);
    }

    #[test]
    fn node_ids_that_could_forge_a_name_are_refused() {
        let ca = Authority::from_stored(Authority::create().unwrap()).unwrap();
        for bad in ["", "a/b", "a b", "ü", "a?x=1", &"n".repeat(129)] {
            assert!(ca.node(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_caller_speaks_only_as_its_own_node() {
        let node = Caller::Node("a".into());
        assert!(node.check("a").is_ok());
        assert_eq!(node.check("b").unwrap_err().code(), tonic::Code::PermissionDenied);
        assert!(Caller::Trusted.check("b").is_ok());
    }
}
