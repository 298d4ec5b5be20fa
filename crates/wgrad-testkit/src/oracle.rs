//! Reader for the TensorFlow reference cases in `tests/data/*.safetensors` (copied from the
//! project's shared oracle; see tests/data/README.md): each case is a group of tensors named
//! `caseNNN.<role>`, and the file's metadata maps `caseNNN` to the op's parameters as JSON.

use std::collections::BTreeMap;

pub struct Case {
    pub name: String,
    pub params: serde_json::Value,
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Case {
    /// Shape and f32 data of `role` (e.g. "input", "grad_filter").
    pub fn get(&self, role: &str) -> (&[usize], &[f32]) {
        let (s, d) = self
            .tensors
            .get(role)
            .unwrap_or_else(|| panic!("{}: no tensor {role:?}", self.name));
        (s, d)
    }

    pub fn has(&self, role: &str) -> bool {
        self.tensors.contains_key(role)
    }

    /// A `[a, b]` integer pair parameter such as "stride".
    pub fn pair(&self, key: &str) -> [usize; 2] {
        let v = &self.params[key];
        [
            v[0].as_u64().unwrap() as usize,
            v[1].as_u64().unwrap() as usize,
        ]
    }

    pub fn str(&self, key: &str) -> &str {
        self.params[key]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no string {key:?}", self.name))
    }
}

/// A file of the repository's `tests/data/` (whichever crate's test asks).
pub fn data_path(file: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data")
        .join(file)
}

/// Every case of `tests/data/<family>.safetensors`, in name order.
pub fn cases(family: &str) -> Vec<Case> {
    let path = data_path(&format!("{family}.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let params = meta.metadata().clone().unwrap_or_default();
    let mut out: BTreeMap<String, Case> = BTreeMap::new();
    for (name, view) in st.tensors() {
        let (case, role) = name
            .split_once('.')
            .unwrap_or_else(|| panic!("tensor {name} is not case.role"));
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let entry = out.entry(case.to_string()).or_insert_with(|| Case {
            name: case.to_string(),
            params: params
                .get(case)
                .map(|j| serde_json::from_str(j).unwrap())
                .unwrap_or(serde_json::Value::Null),
            tensors: BTreeMap::new(),
        });
        entry
            .tensors
            .insert(role.to_string(), (view.shape().to_vec(), data));
    }
    out.into_values().collect()
}
