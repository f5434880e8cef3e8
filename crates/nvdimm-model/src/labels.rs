//! Label storage area and namespace-index math. STUB: filled in by the labels work.
