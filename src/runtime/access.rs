//! Asking the API server what another identity may do: one
//! SubjectAccessReview per question, answered by the cluster's own
//! authorizers (RBAC and whatever else is configured), never by a copy of
//! their rules here. SubjectAccessReviews are not stored; they cost the API
//! server an authorization check each.

use crate::domain::consent::Consenter;
use crate::domain::escalation::Question;
use crate::runtime::writer::Writer;
use k8s_openapi::api::authorization::v1::{SubjectAccessReview, SubjectAccessReviewSpec};
use kube::Api;
use kube::api::PostParams;

/// Whether `who` may do what `question` asks, as the API server decides.
pub async fn allowed(writer: &Writer, who: &Consenter, question: &Question) -> kube::Result<bool> {
    let (resource_attributes, non_resource_attributes) = question.attributes();
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(who.user.clone()),
            groups: Some(who.groups.clone()),
            resource_attributes,
            non_resource_attributes,
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(writer.client.clone());
    let answer = writer
        .limited(api.create(&PostParams::default(), &review))
        .await?;
    Ok(answer
        .status
        .is_some_and(|s| s.allowed && s.denied != Some(true)))
}
