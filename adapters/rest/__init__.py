"""REST: the zndraw-joblib 0.1.7 wire under `/v1/joblib` (`router.create_router`),
behind the input boundary, with problem+json errors."""
