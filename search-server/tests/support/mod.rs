//! Shared test support, included with `mod support;` from integration test files.
//! Each test binary uses a different part of it, hence the allowance below.
#![allow(dead_code)]

pub mod origin;
