pub use wgrad_tensor::*;
