"""A second storefront for the tests (login, Bearer tokens, business codes, MariaDB or Redis)."""
