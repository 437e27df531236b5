//! End-to-end tests: the real `lab` binary against kubesim, a simulated cluster whose pods run real MariaDB
//! servers in their own network namespaces. They need root, iproute2, util-linux and mariadb-server; without them
//! they fail with a message that says what to install.

mod demo;
mod dns;
mod exercise;
mod exercise_more;
mod explain;
mod faults;
mod grading;
mod harness;
mod interrupt;
mod kubectl;
mod kubectl_api;
mod lifecycle;
mod openapi;
mod repair;
mod resume;
mod services;
mod sim;
mod tutorial;
