"""The HTTP edge shared by every service: error responses as RFC 9457 problem details
(`referrals_common.api.problems`)."""
