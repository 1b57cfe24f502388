//! Stub: function.
