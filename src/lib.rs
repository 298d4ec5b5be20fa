pub use wgrad_tensor::*;
pub use wgrad_data as data;
