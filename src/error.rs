//! One error type for the whole crate, with a stable machine-readable code.
//!
//! The code is part of the public contract: the JS facade turns every `Error` into a JS `Error` whose
//! `code` property is `ErrorCode::as_str()`. Messages are for people: say what happened and what to do.

use std::fmt;

/// Stable error codes. Never rename one; add new ones at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The bytes are not a well-formed GGUF file (bad magic, truncated, inconsistent, hostile).
    BadGguf,
    /// A well-formed GGUF whose architecture or tensor layout this engine cannot run.
    UnsupportedModel,
    /// A tensor type (quantization format) this engine cannot decode.
    UnsupportedQuant,
    /// A download failed (HTTP error, connection lost, not a GGUF at that URL).
    Network,
    /// Bytes did not match their recorded or expected hash.
    Integrity,
    /// Browser storage has no room for the model.
    QuotaExceeded,
    /// The caller aborted the operation.
    Aborted,
    /// The GPU device was lost (or ran out of memory) while a model ran on it.
    DeviceLost,
    /// The model cannot run on the GPU here: WebGPU is missing, no adapter or device could be
    /// had, or the GPU failed its self-check. Load with backend "auto" or "cpu".
    GpuUnavailable,
    /// The prompt plus generated tokens do not fit the context length.
    ContextOverflow,
    /// The engine is already running a generation.
    Busy,
    /// An argument or option is out of range or malformed.
    InvalidArgument,
    /// A bug in browser-llm. Please report it.
    Internal,
    /// The tab that held a `SharedEngine`'s model closed while the call ran there: retry it
    /// (another tab takes the model over, from browser storage).
    HostChanged,
}

impl ErrorCode {
    /// Every code, in declaration order (exported to JS by `contract()`).
    pub const ALL: [ErrorCode; 14] = [
        ErrorCode::BadGguf,
        ErrorCode::UnsupportedModel,
        ErrorCode::UnsupportedQuant,
        ErrorCode::Network,
        ErrorCode::Integrity,
        ErrorCode::QuotaExceeded,
        ErrorCode::Aborted,
        ErrorCode::DeviceLost,
        ErrorCode::GpuUnavailable,
        ErrorCode::ContextOverflow,
        ErrorCode::Busy,
        ErrorCode::InvalidArgument,
        ErrorCode::Internal,
        ErrorCode::HostChanged,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadGguf => "BAD_GGUF",
            ErrorCode::UnsupportedModel => "UNSUPPORTED_MODEL",
            ErrorCode::UnsupportedQuant => "UNSUPPORTED_QUANT",
            ErrorCode::Network => "NETWORK",
            ErrorCode::Integrity => "INTEGRITY",
            ErrorCode::QuotaExceeded => "QUOTA_EXCEEDED",
            ErrorCode::Aborted => "ABORTED",
            ErrorCode::DeviceLost => "DEVICE_LOST",
            ErrorCode::GpuUnavailable => "GPU_UNAVAILABLE",
            ErrorCode::ContextOverflow => "CONTEXT_OVERFLOW",
            ErrorCode::Busy => "BUSY",
            ErrorCode::InvalidArgument => "INVALID_ARGUMENT",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::HostChanged => "HOST_CHANGED",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a stable code and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error { code, message: message.into() }
    }
    pub fn bad_gguf(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadGguf, message)
    }
    pub fn unsupported_model(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnsupportedModel, message)
    }
    pub fn unsupported_quant(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UnsupportedQuant, message)
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
