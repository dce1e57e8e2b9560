//! Labels and annotations on containers and pods that podgraft reads or writes. containerd keeps
//! them with each container, so they are what podgraft knows after a restart.

/// Marks a container as dynamic. podgraft finds its containers by it after a restart, and the
/// relay hides every container that has it from the kubelet.
pub const DYNAMIC_LABEL: &str = "podgraft.io/dynamic";
/// The container's spec (see `lifecycle::stored_spec`), so GetContainer can show it after a
/// restart and growth can be recounted.
pub const SPEC_ANNOTATION: &str = "podgraft.io/spec";
/// What admission decided for the container (its effective security settings and resolved
/// mounts, JSON): a restart creates the next attempt with exactly these.
pub const ADMITTED_ANNOTATION: &str = "podgraft.io/admitted";
/// Label on each container an add creates, naming its batch (crash-safe adds).
pub const BATCH_LABEL: &str = "podgraft.io/batch";
/// Pod annotation: the most CPU (Kubernetes quantity) the pod's dynamic containers may add together.
pub const MAX_CPU_ANNOTATION: &str = "podgraft.io/max-cpu";
/// Pod annotation: the most memory the pod's dynamic containers may add together.
pub const MAX_MEMORY_ANNOTATION: &str = "podgraft.io/max-memory";

pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
pub const RESTART_COUNT_ANNOTATION: &str = "io.kubernetes.container.restartCount";
pub const TERMINATION_MESSAGE_PATH_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePath";
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// The kubelet's pod labels, copied from the sandbox onto each dynamic container.
pub const POD_LABELS: [&str; 3] = [POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL];

/// Key prefixes a user's labels and annotations may not use.
pub const RESERVED_PREFIXES: [&str; 2] = ["io.kubernetes.", "podgraft.io/"];
