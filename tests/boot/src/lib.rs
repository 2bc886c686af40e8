//! The LKL boot test lives in tests/ and examples/.
