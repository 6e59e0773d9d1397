"""Who is calling: per-case access tokens that intake issues and other services verify offline
(`referrals_common.auth.case_tokens`), and hashed API keys for partner front ends, operators and
cancer centers (`referrals_common.auth.api_keys`)."""
