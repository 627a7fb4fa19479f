"""Development benchmarks of a checkout (not installed with the package); run them through scripts/."""
