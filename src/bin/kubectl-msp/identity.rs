//! Who you are, as the API server authenticates you, and the `User/NAME` or
//! `Group/NAME` principals you act as.
//!
//! Consent, activation requests and approvals all name their author, and
//! admission refuses any name but the authenticated one. Asking the API
//! server (a SelfSubjectReview) instead of reading the kubeconfig is the
//! only answer that holds for certificates, tokens, OIDC and impersonation
//! alike.

use crate::errors::Request;
use anyhow::anyhow;
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::Api;
use kube::api::PostParams;
use msp_operator::api::{Person, PersonKind};

/// The authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    /// The user name.
    pub username: String,
    /// The groups, as the API server sees them.
    pub groups: Vec<String>,
}

/// Asks the API server who the client is.
pub async fn whoami(client: &kube::Client) -> anyhow::Result<Me> {
    let review = Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .map_err(|e| {
            Request::new("create", "selfsubjectreviews")
                .if_forbidden("the cluster does not let you ask who you are (authentication.k8s.io/v1 SelfSubjectReview); pass --principal and ask an admin")
                .explain(e)
        })?;
    let info = review.status.and_then(|s| s.user_info).ok_or_else(|| {
        anyhow!("the API server did not say who you are (empty SelfSubjectReview)")
    })?;
    let username = info
        .username
        .filter(|u| !u.is_empty())
        .ok_or_else(|| anyhow!("the API server authenticates you without a user name"))?;
    Ok(Me {
        username,
        groups: info.groups.unwrap_or_default(),
    })
}

/// Parses `User/NAME` or `Group/NAME` (the kind case-insensitive), for
/// `--principal`.
pub fn parse_person(text: &str) -> Result<Person, String> {
    let (kind, name) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not User/NAME or Group/NAME"))?;
    let kind = match kind.to_ascii_lowercase().as_str() {
        "user" => PersonKind::User,
        "group" => PersonKind::Group,
        _ => return Err(format!("{kind:?} is not User or Group (in {text:?})")),
    };
    if name.is_empty() {
        return Err(format!(
            "{text:?} names nobody: write User/NAME or Group/NAME"
        ));
    }
    Ok(Person {
        kind,
        name: name.to_string(),
    })
}

/// `User/jane`, `Group/ops`.
pub fn person_text(person: &Person) -> String {
    format!("{}/{}", kind_text(person.kind), person.name)
}

/// `User` or `Group`.
pub fn kind_text(kind: PersonKind) -> &'static str {
    match kind {
        PersonKind::User => "User",
        PersonKind::Group => "Group",
    }
}

/// You as a principal: `User/<your name>`.
pub fn me_as_user(me: &Me) -> Person {
    Person {
        kind: PersonKind::User,
        name: me.username.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_parse_from_kind_slash_name() {
        let group = parse_person("Group/contoso:leads").unwrap();
        assert_eq!(group.kind, PersonKind::Group);
        assert_eq!(group.name, "contoso:leads");
        assert_eq!(person_text(&group), "Group/contoso:leads");
        assert_eq!(parse_person("user/jane").unwrap().kind, PersonKind::User);
        // A name may itself contain a slash (OIDC issuers do).
        assert_eq!(
            parse_person("User/https://idp/jane").unwrap().name,
            "https://idp/jane"
        );
    }

    #[test]
    fn bad_principals_say_what_is_expected() {
        assert!(parse_person("jane").unwrap_err().contains("User/NAME"));
        assert!(
            parse_person("ServiceAccount/x")
                .unwrap_err()
                .contains("not User or Group")
        );
        assert!(parse_person("User/").unwrap_err().contains("names nobody"));
    }
}
