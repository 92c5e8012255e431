//! Input rules for the write side; each message names the offending field.

use crate::error::ApiError;

pub const MAX_NAME_LEN: usize = 63;
pub const MAX_REPLICAS: i32 = 100;
pub const MAX_CPU_CORES: f64 = 64.0;
pub const MEMORY_MB: (i32, i32) = (16, 1_048_576);
pub const MAX_GPU_UNITS: i32 = 16;
pub const MAX_STORAGE_GB: i32 = 16_384;

/// What a new deployment asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeployment {
    pub name: String,
    pub target_replicas: i32,
    pub resources: NewResources,
}

/// Per-replica resources of a new deployment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewResources {
    pub cpu_cores: f64,
    pub memory_mb: i32,
    pub gpu_units: i32,
    pub storage_gb: i32,
}

impl NewDeployment {
    pub fn validate(&self) -> Result<(), ApiError> {
        validate_name(&self.name)?;
        validate_target_replicas(self.target_replicas)?;
        self.resources.validate()
    }
}

impl NewResources {
    fn validate(&self) -> Result<(), ApiError> {
        if !(self.cpu_cores > 0.0 && self.cpu_cores <= MAX_CPU_CORES) {
            return Err(out_of_range(
                "resources.cpuCores",
                "greater than 0 and at most 64",
                self.cpu_cores,
            ));
        }
        in_range("resources.memoryMb", self.memory_mb, MEMORY_MB.0, MEMORY_MB.1)?;
        in_range("resources.gpuUnits", self.gpu_units, 0, MAX_GPU_UNITS)?;
        in_range("resources.storageGb", self.storage_gb, 0, MAX_STORAGE_GB)
    }
}

/// A DNS-label-like name: 1..=63 of `a-z`, `0-9` and `-`, starting with a
/// letter and not ending with `-`.
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let valid = (1..=MAX_NAME_LEN).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::bad_input(format!(
            "`name` must be 1 to {MAX_NAME_LEN} lowercase letters, digits or '-', \
             start with a letter and not end with '-', got {:?}",
            crate::error::echo(name)
        )))
    }
}

pub fn validate_target_replicas(target: i32) -> Result<(), ApiError> {
    in_range("targetReplicas", target, 0, MAX_REPLICAS)
}

fn in_range(field: &str, value: i32, min: i32, max: i32) -> Result<(), ApiError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(out_of_range(field, &format!("between {min} and {max}"), value))
    }
}

fn out_of_range(field: &str, bounds: &str, value: impl std::fmt::Display) -> ApiError {
    ApiError::bad_input(format!("`{field}` must be {bounds}, got {value}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(result: Result<(), ApiError>) -> String {
        match result {
            Err(ApiError::BadUserInput(message)) => message,
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        }
    }

    #[test]
    fn names_follow_the_label_rules() {
        for good in ["a", "web", "api-v2", "a1-b2", &"a".repeat(63)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1web", "-web", "web-", "Web", "web_app", "wéb", "web app", &"a".repeat(64)]
        {
            assert!(message(validate_name(bad)).contains("`name`"), "{bad}");
        }
    }

    #[test]
    fn target_replicas_bounds() {
        assert!(validate_target_replicas(0).is_ok());
        assert!(validate_target_replicas(100).is_ok());
        assert!(message(validate_target_replicas(-1)).contains("`targetReplicas`"));
        assert!(message(validate_target_replicas(101)).contains("`targetReplicas`"));
    }

    #[test]
    fn resource_bounds_name_their_field() {
        let ok = NewResources { cpu_cores: 0.5, memory_mb: 16, gpu_units: 0, storage_gb: 0 };
        assert!(ok.validate().is_ok());
        let max = NewResources {
            cpu_cores: 64.0,
            memory_mb: 1_048_576,
            gpu_units: 16,
            storage_gb: 16_384,
        };
        assert!(max.validate().is_ok());
        let cases = [
            (NewResources { cpu_cores: 0.0, ..ok }, "cpuCores"),
            (NewResources { cpu_cores: 64.01, ..ok }, "cpuCores"),
            (NewResources { memory_mb: 15, ..ok }, "memoryMb"),
            (NewResources { memory_mb: 1_048_577, ..ok }, "memoryMb"),
            (NewResources { gpu_units: -1, ..ok }, "gpuUnits"),
            (NewResources { gpu_units: 17, ..ok }, "gpuUnits"),
            (NewResources { storage_gb: -1, ..ok }, "storageGb"),
            (NewResources { storage_gb: 16_385, ..ok }, "storageGb"),
        ];
        for (resources, field) in cases {
            assert!(message(resources.validate()).contains(field), "{field}");
        }
    }
}
