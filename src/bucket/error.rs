//! Bucket failures as one-line messages that name what is wrong and what to do, each with the
//! exit code class the CLI maps it to. The S3 error body (an XML code such as `NoSuchBucket`)
//! decides between causes that share a status; internal detail beyond that code is not shown.

use std::path::PathBuf;

use super::BucketUrl;
use crate::ErrorClass;

/// Why a bucket operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    /// The location string is not `s3://bucket/prefix`.
    #[error("bad store location {location}: {reason}")]
    BadLocation { location: String, reason: String },
    /// The endpoint (`AWS_ENDPOINT_URL` or `[s3] endpoint`) is refused.
    #[error("bad S3 endpoint {endpoint}: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    /// A bucket store needs a local work folder and none can be chosen.
    #[error(
        "no work folder for the bucket store: set [mirror] work (or --work), or HOME / \
         XDG_STATE_HOME"
    )]
    NoWorkFolder,
    /// Writing needs credentials and none are set.
    #[error(
        "no credentials for {location}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
         (and AWS_SESSION_TOKEN for temporary ones), or a profile in ~/.aws/credentials \
         (AWS_PROFILE)"
    )]
    NoCredentials { location: String },
    /// An AWS shared config or credentials file cannot be read or parsed.
    #[error(
        "AWS profile file {}{}: {reason}",
        path.display(),
        line.map(|l| format!(" line {l}")).unwrap_or_default()
    )]
    Profile {
        path: PathBuf,
        line: Option<usize>,
        reason: String,
    },
    /// `AWS_PROFILE` names a profile that neither file has.
    #[error(
        "AWS profile {name:?} (AWS_PROFILE) is not in {credentials} nor in {config} (as \
         [profile {name}]): add it, or set AWS_PROFILE to one that exists"
    )]
    NoProfile {
        name: String,
        credentials: String,
        config: String,
    },
    /// The service refused the credentials or their rights (401/403).
    #[error(
        "{location} at {endpoint} refused the credentials ({code}): check AWS_ACCESS_KEY_ID, \
         AWS_SECRET_ACCESS_KEY and AWS_REGION, and that the key may read and write this bucket"
    )]
    Credentials {
        location: String,
        endpoint: String,
        code: String,
    },
    /// The bucket does not exist at that endpoint.
    #[error(
        "bucket {bucket} does not exist at {endpoint}: create it, or check the bucket name and \
         AWS_ENDPOINT_URL / [s3] endpoint"
    )]
    MissingBucket { bucket: String, endpoint: String },
    /// No answer from the endpoint (connection refused, DNS, TLS, timeout after retries).
    #[error(
        "cannot reach the S3 endpoint {endpoint} for {location}: {reason}; check \
         AWS_ENDPOINT_URL / [s3] endpoint and the network"
    )]
    Unreachable {
        location: String,
        endpoint: String,
        reason: String,
    },
    /// Anything else the service answered with.
    #[error("{location} at {endpoint}: {key}: {reason}")]
    Service {
        location: String,
        endpoint: String,
        key: String,
        reason: String,
    },
    /// An object is larger than the caller's cap.
    #[error("bucket object {key} is larger than {limit} bytes: refused")]
    TooLarge { key: String, limit: u64 },
    /// A listing returned more objects than the cap.
    #[error("bucket prefix {prefix} holds more than {limit} objects: refused")]
    TooMany { prefix: String, limit: usize },
    /// A local file to upload could not be read.
    #[error("{}: {source}", path.display())]
    LocalIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(super) fn class(e: &BucketError) -> ErrorClass {
    match e {
        BucketError::BadLocation { .. }
        | BucketError::BadEndpoint { .. }
        | BucketError::NoWorkFolder
        | BucketError::NoCredentials { .. }
        | BucketError::Profile { .. }
        | BucketError::NoProfile { .. } => ErrorClass::Usage,
        BucketError::TooLarge { .. } => ErrorClass::Verification,
        BucketError::Credentials { .. }
        | BucketError::MissingBucket { .. }
        | BucketError::Unreachable { .. }
        | BucketError::Service { .. }
        | BucketError::TooMany { .. }
        | BucketError::LocalIo { .. } => ErrorClass::Runtime,
    }
}

/// The S3 error code in a response body (`<Code>NoSuchBucket</Code>`), if any.
fn s3_code(text: &str) -> Option<&str> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    let code = &text[start..start + len];
    (code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(code)
}

/// Maps an `object_store` error on `relative` to the one-line error.
pub(super) fn map(
    url: &BucketUrl,
    endpoint: &str,
    relative: &str,
    e: object_store::Error,
) -> BucketError {
    let location = url.to_string();
    let endpoint = endpoint.to_owned();
    // The whole chain, for the S3 code and the transport's reason.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    let code = s3_code(&text).map(str::to_owned);
    if code.as_deref() == Some("NoSuchBucket") {
        return BucketError::MissingBucket {
            bucket: url.bucket().to_owned(),
            endpoint,
        };
    }
    match e {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => BucketError::Credentials {
            location,
            endpoint,
            code: code.unwrap_or_else(|| "access denied".into()),
        },
        // A listing (the probe) answered 404: the bucket itself is missing.
        object_store::Error::NotFound { .. } if relative.is_empty() => BucketError::MissingBucket {
            bucket: url.bucket().to_owned(),
            endpoint,
        },
        _ if code.is_some() => {
            let code = code.unwrap_or_default();
            match code.as_str() {
                "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "AccessDenied"
                | "AuthorizationHeaderMalformed"
                | "InvalidToken"
                | "ExpiredToken" => BucketError::Credentials {
                    location,
                    endpoint,
                    code,
                },
                _ => BucketError::Service {
                    location,
                    endpoint,
                    key: url.key(relative),
                    reason: code,
                },
            }
        }
        _ if is_transport(&text) => BucketError::Unreachable {
            location,
            endpoint,
            reason: transport_reason(&text),
        },
        _ => BucketError::Service {
            location,
            endpoint,
            key: url.key(relative),
            reason: crate::shown::escaped(text.lines().next().unwrap_or("").as_bytes())
                .chars()
                .take(300)
                .collect(),
        },
    }
}

fn is_transport(text: &str) -> bool {
    [
        "error sending request",
        "connection",
        "Connection refused",
        "dns error",
        "timed out",
        "tcp connect",
        "certificate",
    ]
    .iter()
    .any(|m| text.contains(m))
}

fn transport_reason(text: &str) -> String {
    for (marker, reason) in [
        ("Connection refused", "connection refused"),
        ("dns error", "the host name does not resolve"),
        ("certificate", "TLS certificate refused"),
        ("timed out", "timed out"),
    ] {
        if text.contains(marker) {
            return reason.into();
        }
    }
    "no answer".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_codes_are_read_from_error_bodies_and_nothing_else() {
        assert_eq!(
            s3_code("<Error><Code>NoSuchBucket</Code><Message>x</Message></Error>"),
            Some("NoSuchBucket")
        );
        assert_eq!(s3_code("<Code>a b</Code>"), None);
        assert_eq!(s3_code("no code"), None);
    }
}
