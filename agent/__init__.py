"""The trainops agent: natural-language requests to launched, watched and priced training jobs."""
