"""Providers: data a connected worker serves on demand, and the result cache port that
REST reads answer from (`results.ResultCache`; in memory or on Redis)."""
