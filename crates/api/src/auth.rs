//! Bearer-token auth: with a token configured, every call (health included) must carry
//! `authorization: Bearer <token>`, or it fails with UNAUTHENTICATED.

use std::sync::Arc;

use tonic::{Request, Status};

/// The server side: checks the `authorization` metadata of every call.
#[derive(Clone)]
pub struct RequireToken {
    token: Option<Arc<str>>,
}

impl RequireToken {
    pub fn new(token: Option<String>) -> RequireToken {
        RequireToken { token: token.map(Arc::from) }
    }
}

impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let Some(want) = &self.token else { return Ok(req) };
        let got = req.metadata().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        match got {
            Some(got) if same(got.as_bytes(), want.as_bytes()) => Ok(req),
            Some(_) => Err(Status::unauthenticated("wrong token (the server compares it with its --token-file)")),
            None => Err(Status::unauthenticated("this server requires a token: set BUILDER_TOKEN or BUILDER_TOKEN_FILE")),
        }
    }
}

/// Equality that takes the same time wherever the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The client side: adds the token to every call.
#[derive(Clone)]
pub struct SendToken {
    header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl SendToken {
    pub fn new(token: Option<&str>) -> Result<SendToken, crate::ApiError> {
        let header = match token {
            None => None,
            Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| crate::ApiError::Protocol("the token has characters that cannot go in a header".into()))?),
        };
        Ok(SendToken { header })
    }
}

impl tonic::service::Interceptor for SendToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::service::Interceptor;

    fn call(token: Option<&str>, header: Option<&str>) -> Result<(), tonic::Code> {
        let mut req = Request::new(());
        if let Some(h) = header {
            req.metadata_mut().insert("authorization", h.parse().expect("header"));
        }
        RequireToken::new(token.map(str::to_string)).call(req).map(|_| ()).map_err(|s| s.code())
    }

    #[test]
    fn only_the_right_bearer_token_passes() {
        assert_eq!(call(Some("t0k"), Some("Bearer t0k")), Ok(()));
        assert_eq!(call(Some("t0k"), Some("Bearer nope")), Err(tonic::Code::Unauthenticated));
        assert_eq!(call(Some("t0k"), Some("t0k")), Err(tonic::Code::Unauthenticated));
        assert_eq!(call(Some("t0k"), None), Err(tonic::Code::Unauthenticated));
        assert_eq!(call(None, None), Ok(()));
    }
}
