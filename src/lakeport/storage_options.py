"""Where S3 and Azure Storage settings come from: an explicit value, else the environment.

One reading of the standard variables for every part of lakeport that talks to a bucket or a
container (the exporter's sinks, the file service's lake):

- S3: endpoint ``AWS_ENDPOINT_URL_S3``, then ``AWS_ENDPOINT_URL``; region ``AWS_REGION``, then
  ``AWS_DEFAULT_REGION``. Keys, profiles and roles stay with the AWS credential chain.
- Azure: ``AZURE_STORAGE_ACCOUNT_NAME``, ``AZURE_STORAGE_CONNECTION_STRING``,
  ``AZURE_STORAGE_ACCOUNT_KEY`` and ``AZURE_STORAGE_SAS_TOKEN``.

An empty value (option or variable) counts as unset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import SecretStr

ENV_S3_ENDPOINT = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
ENV_S3_REGION = ("AWS_REGION", "AWS_DEFAULT_REGION")
ENV_ACCOUNT_NAME = "AZURE_STORAGE_ACCOUNT_NAME"
ENV_ACCOUNT_KEY = "AZURE_STORAGE_ACCOUNT_KEY"
ENV_SAS_TOKEN = "AZURE_STORAGE_SAS_TOKEN"
ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"


def setting(value: str | SecretStr | None, *env: str) -> str | None:
    """``value`` (a secret is revealed), else the first of the variables ``env`` that is set."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value or next((os.environ[name] for name in env if os.environ.get(name)), None)


def s3_endpoint(value: str | None = None) -> str | None:
    """The S3 endpoint URL: ``value``, else ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``."""
    return setting(value, *ENV_S3_ENDPOINT)


def s3_region(value: str | None = None) -> str | None:
    """The S3 region: ``value``, else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``."""
    return setting(value, *ENV_S3_REGION)


def connection_field(connection: str | None, field: str) -> str | None:
    """One ``Name=value`` field of an Azure Storage connection string."""
    for part in (connection or "").split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() == field.lower() and value:
            return value.strip()
    return None


@dataclass(frozen=True)
class AzureCredentials:
    """The account and secrets of an Azure Storage container, first match wins: the
    connection string, the account key, the SAS token (none: ``DefaultAzureCredential``)."""

    account: str | None
    connection_string: str | None
    account_key: str | None
    sas_token: str | None

    @classmethod
    def resolve(cls, account: str | None = None, *,
                connection_string: str | SecretStr | None = None,
                account_key: str | SecretStr | None = None,
                sas_token: str | SecretStr | None = None) -> AzureCredentials:
        """Fill what is not given from the ``AZURE_STORAGE_*`` variables; the account comes
        from ``account``, the connection string's ``AccountName`` or the environment."""
        connection = setting(connection_string, ENV_CONNECTION_STRING)
        return cls(
            account=account or connection_field(connection, "AccountName")
            or setting(None, ENV_ACCOUNT_NAME),
            connection_string=connection,
            account_key=setting(account_key, ENV_ACCOUNT_KEY),
            sas_token=setting(sas_token, ENV_SAS_TOKEN),
        )


__all__ = ["ENV_ACCOUNT_KEY", "ENV_ACCOUNT_NAME", "ENV_CONNECTION_STRING", "ENV_S3_ENDPOINT",
           "ENV_S3_REGION", "ENV_SAS_TOKEN", "AzureCredentials", "connection_field", "s3_endpoint",
           "s3_region", "setting"]
