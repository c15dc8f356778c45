//! Certificates and keys for a throw-away control plane.
//!
//! Every start generates fresh material: a serving CA and a certificate for the
//! API server on loopback, a client CA whose certificates the API server trusts
//! (admin, kube-controller-manager, and any test user), and the ServiceAccount
//! token signing key. Nothing is reused between runs, so no secret outlives the
//! control plane it belongs to.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::{IpAddr, Ipv4Addr};

/// A PEM certificate with its PEM (PKCS#8) private key.
#[derive(Clone, Debug)]
pub struct CertAndKey {
    /// The certificate, PEM encoded.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM encoded.
    pub key_pem: String,
}

/// All key material of one control plane.
pub struct Pki {
    server_ca: CertifiedIssuer<'static, KeyPair>,
    client_ca: CertifiedIssuer<'static, KeyPair>,
    /// The key the API server signs ServiceAccount tokens with.
    pub service_account_key: KeyPair,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki").finish_non_exhaustive()
    }
}

fn ca(common_name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

impl Pki {
    /// Generates a new serving CA, client CA and ServiceAccount signing key.
    pub fn generate() -> Result<Self, rcgen::Error> {
        Ok(Self {
            server_ca: ca("msp-testenv-server-ca")?,
            client_ca: ca("msp-testenv-client-ca")?,
            service_account_key: KeyPair::generate()?,
        })
    }

    /// The CA that signed the API server's serving certificate.
    pub fn server_ca_pem(&self) -> String {
        self.server_ca.pem()
    }

    /// The CA the API server trusts for client certificates.
    pub fn client_ca_pem(&self) -> String {
        self.client_ca.pem()
    }

    /// The client CA's private key (kube-controller-manager signs CSRs with it).
    pub fn client_ca_key_pem(&self) -> String {
        self.client_ca.key().serialize_pem()
    }

    /// A serving certificate for the API server on loopback, with the in-cluster
    /// names too so that a kubeconfig using either works.
    pub fn serving_cert(&self) -> Result<CertAndKey, rcgen::Error> {
        let mut params = CertificateParams::new(vec![
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "kubernetes.default.svc.cluster.local".to_string(),
        ])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.server_ca)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A client certificate for `user` in `groups`, as the API server reads
    /// them: the common name is the user name, each organization a group.
    /// rcgen keeps one value per attribute type (the last pushed), so more
    /// than one group is refused rather than silently dropped.
    pub fn client_cert(&self, user: &str, groups: &[&str]) -> anyhow::Result<CertAndKey> {
        if groups.len() > 1 {
            anyhow::bail!(
                "a client certificate carries one group at most here (rcgen keeps one organization); {user} was asked for {groups:?}: authenticate by impersonation instead (TestEnv::user_client does)"
            );
        }
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *group);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.client_ca)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_certificates_carry_user_and_groups() {
        let pki = Pki::generate().expect("pki");
        let user = pki.client_cert("alice", &["team-a"]).expect("cert");
        assert!(user.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let two = pki.client_cert("alice", &["team-a", "team-b"]);
        assert!(two.is_err(), "a second group would be dropped silently");
        assert!(user.key_pem.contains("PRIVATE KEY"));
        assert_ne!(pki.server_ca_pem(), pki.client_ca_pem());
    }
}
