//! API errors turned into what the user should do about them.
//!
//! The API server answers "forbidden" both when RBAC denies a request and
//! when an admission policy refuses it (whose message already names the
//! fix), and "not found" both for a missing object and for a kind the
//! cluster does not serve. Each is told apart here and written as one or
//! two lines that say what to do, so no command prints a raw status.

use anyhow::anyhow;
use kube::core::Status;

/// What a failed request was doing: the words of its error message.
#[derive(Debug, Clone, Default)]
pub struct Request {
    verb: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    forbidden: Option<String>,
    missing: Option<String>,
}

impl Request {
    /// `verb` on `resource` (the plural, as in `kubectl auth can-i`).
    pub fn new(verb: &str, resource: &str) -> Self {
        Self {
            verb: verb.into(),
            resource: resource.into(),
            ..Default::default()
        }
    }

    /// In namespace `namespace` (none: cluster-wide).
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Of the object `name`.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Whom to ask, or what to do instead, when RBAC forbids it.
    pub fn if_forbidden(mut self, hint: impl Into<String>) -> Self {
        self.forbidden = Some(hint.into());
        self
    }

    /// What to do when the object does not exist.
    pub fn if_missing(mut self, hint: impl Into<String>) -> Self {
        self.missing = Some(hint.into());
        self
    }

    /// The error to show for `error`.
    pub fn explain(&self, error: kube::Error) -> anyhow::Error {
        match error {
            kube::Error::Api(status) => anyhow!(self.explain_status(&status)),
            other => anyhow!("cannot reach the Kubernetes API server: {other}"),
        }
    }

    fn place(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "cluster-wide".to_string(),
        }
    }

    fn explain_status(&self, status: &Status) -> String {
        let message = status.message.as_str();
        match status.code {
            403 if is_rbac_denial(message) => self.forbidden_message(),
            403 | 422 | 400 => admission_message(message),
            404 if self.name.is_some() && !is_unserved(message) => self.missing_message(),
            404 => format!(
                "this cluster does not serve {}.msp-operator.io: install (or upgrade) msp-operator's CRDs (crds/ in its repository, or its Helm chart)",
                self.resource
            ),
            409 => format!(
                "{} {} already exists {}: {}",
                self.resource,
                self.name.as_deref().unwrap_or_default(),
                self.place(),
                self.missing.as_deref().unwrap_or("choose another name")
            ),
            code => format!(
                "cannot {} {} {}: {message} (HTTP {code})",
                self.verb,
                self.resource,
                self.place()
            ),
        }
    }

    fn forbidden_message(&self) -> String {
        let default_hint = match &self.namespace {
            Some(ns) => format!(
                "ask an admin of namespace {ns} to grant it (`kubectl auth can-i {} {}.msp-operator.io -n {ns}` checks)",
                self.verb, self.resource
            ),
            None => "ask a cluster admin to grant it".to_string(),
        };
        format!(
            "you may not {} {} {}: {}",
            self.verb,
            self.resource,
            self.place(),
            self.forbidden.clone().unwrap_or(default_hint)
        )
    }

    fn missing_message(&self) -> String {
        let kind = singular(&self.resource);
        let name = self.name.as_deref().unwrap_or_default();
        match &self.missing {
            Some(hint) => format!("{kind} {name} not found {}: {hint}", self.place()),
            None => format!("{kind} {name} not found {}", self.place()),
        }
    }
}

/// RBAC's denial reads `User "u" cannot get resource "r" in API group …`.
fn is_rbac_denial(message: &str) -> bool {
    message.contains(" cannot ") && message.contains("resource \"")
}

/// A kind the cluster does not serve at all, rather than a missing object.
fn is_unserved(message: &str) -> bool {
    message.contains("the server could not find the requested resource")
}

/// An admission policy's (or the schema's) message without the machinery
/// around it: `… ValidatingAdmissionPolicy 'p' with binding 'b' denied
/// request: <message>` becomes `<message>`.
pub fn admission_message(message: &str) -> String {
    const MARK: &str = "denied request: ";
    match message.find(MARK) {
        Some(at) => message[at + MARK.len()..].to_string(),
        None => message.to_string(),
    }
}

/// `delegations` → `Delegation`, for messages about one object.
fn singular(resource: &str) -> String {
    match resource {
        "delegations" => "Delegation".into(),
        "activations" => "Activation".into(),
        "offercatalogs" => "OfferCatalog".into(),
        "customerdelegations" => "CustomerDelegation".into(),
        other => other.trim_end_matches('s').to_string(),
    }
}

/// True for the API server's "forbidden" by RBAC.
pub fn is_forbidden(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 403 && is_rbac_denial(&s.message))
}

/// True for "already exists".
pub fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status::failure(message, "").with_code(code)))
    }

    #[test]
    fn rbac_denials_say_what_is_missing_and_whom_to_ask() {
        let error = status(
            403,
            r#"offercatalogs.msp-operator.io is forbidden: User "bob" cannot create resource "offercatalogs" in API group "msp-operator.io" in the namespace "shop""#,
        );
        assert!(is_forbidden(&error));
        let request = Request::new("create", "offercatalogs")
            .namespace("shop")
            .if_forbidden("ask a namespace editor to run `kubectl msp offers -n shop`");
        assert_eq!(
            request.explain(error).to_string(),
            "you may not create offercatalogs in namespace shop: ask a namespace editor to run `kubectl msp offers -n shop`"
        );
    }

    #[test]
    fn admission_refusals_keep_their_message() {
        let error = status(
            403,
            "delegations.msp-operator.io \"d\" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'p' denied request: a Delegation may only cover namespaces where you may create RoleBindings yourself; you may not in namespace x",
        );
        assert!(!is_forbidden(&error));
        let text = Request::new("create", "delegations")
            .explain(error)
            .to_string();
        assert_eq!(
            text,
            "a Delegation may only cover namespaces where you may create RoleBindings yourself; you may not in namespace x"
        );
    }

    #[test]
    fn not_found_tells_a_missing_object_from_a_missing_kind() {
        let request = Request::new("get", "delegations")
            .namespace("shop")
            .name("ops")
            .if_missing("`kubectl msp providers -n shop` lists them");
        let missing = status(404, "delegations.msp-operator.io \"ops\" not found");
        assert_eq!(
            request.explain(missing).to_string(),
            "Delegation ops not found in namespace shop: `kubectl msp providers -n shop` lists them"
        );
        let unserved = status(404, "the server could not find the requested resource");
        assert!(
            request
                .explain(unserved)
                .to_string()
                .starts_with("this cluster does not serve delegations.msp-operator.io")
        );
    }

    #[test]
    fn other_failures_name_the_request() {
        let request = Request::new("list", "customerdelegations");
        assert_eq!(
            request.explain(status(500, "etcd is down")).to_string(),
            "cannot list customerdelegations cluster-wide: etcd is down (HTTP 500)"
        );
        assert!(
            Request::new("list", "customerdelegations")
                .explain(status(403, r#"User "p" cannot list resource "customerdelegations" in API group "msp-operator.io" at the cluster scope"#))
                .to_string()
                .starts_with("you may not list customerdelegations cluster-wide: ask a cluster admin")
        );
    }
}
