//! The scaling policy, as pure functions of what was observed (no clock, no I/O): Kubernetes'
//! HPA recommendation (`ceil(current × signal / target)`, nothing within the tolerance), its
//! stabilization windows (a scale-up only when every recommendation of the up-window is higher;
//! a scale-down to the highest recommendation of the down-window), the step limit, the bounds,
//! and Knative's panic mode. Implemented by the autoscale controller's engineer.
