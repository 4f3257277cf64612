//! (filled in by issue 20's work)
