"""The reference web application of the referral platform: the patient's pages, a
backend-for-frontend that reaches the platform only through its public HTTP APIs."""
