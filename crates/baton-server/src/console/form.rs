//! The console's form extractor: like axum's `Form`, but a form the server cannot read (a
//! missing field, a wrong type, a body that is no form) is answered like any other bad input —
//! problem+json for htmx, shown in place, or the HTML error page for a navigation.

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::Error;

pub(super) struct Form<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Form<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(value)) => Ok(Form(value)),
            Err(rejection) => {
                Err(baton_core::Error::invalid("/", format!("the form could not be read: {}", rejection.body_text()))
                    .into())
            }
        }
    }
}
