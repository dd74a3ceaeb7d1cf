"""The console's words: the seeds' (000, 001) where they give them, plain ones else."""

from __future__ import annotations

__all__ = [
    "CONFIRM", "DELETED", "DELETE_NAME_MISMATCH", "DEPLOY_STARTED", "KEY_CREATED", "KEY_DELETED",
    "KEY_WARNING", "NOT_DEPLOYED", "UNDEPLOYED",
]  # fmt: skip

# Seed 001, "Undeploy the Script": the subject of the email, and the success message.
UNDEPLOYED = "Your custom script has been undeployed successfully"
DEPLOY_STARTED = "Deploying {name}: the status changes to Deployed when it is ready."
DEPLOYED = "Custom script deployed successfully - API Endpoint Available"
DELETED = "The custom script {name} has been deleted."
DELETE_NAME_MISMATCH = "The name typed does not match: type {name} to delete it."
KEY_CREATED = "API key generated."
KEY_DELETED = "API key {key} deleted."
COPIED = "Copied to clipboard"

# Seed 001, "Create an API Key": the note shown with a new key.
KEY_WARNING = (
    "Your secret API key is shown only once when generated. Save the key in a safe "
    "location. Do not share it or expose it in browsers or other client-side code. "
    "If you lose a secret key, a new one must be generated."
)

# Seed 001, "Endpoint": the page of a script that is not Deployed.
NOT_DEPLOYED = (
    "The endpoint is not activated since the script is not deployed. Deploy the script "
    "to activate the endpoint and get its code."
)
# Seed 001, "Deployment History": a Draft's window sends to the import-and-deploy steps.
DRAFT_HISTORY = (
    "This script is a draft: it has no deployment history yet. Click Deploy custom script "
    "and follow the steps for import and deploy."
)

# The confirmation windows (seed 001, "Actions"): title, text, the button's word.
CONFIRM: dict[str, dict[str, str]] = {
    "deploy": {
        "title": "Deploy custom script",
        "text": "Deploy {name}? A new version is built and started; the endpoint is "
        "activated once the status is Deployed.",
        "button": "Deploy",
    },
    "undeploy": {
        "title": "Undeploy custom script",
        "text": "Undeploy {name}? It is undeployed from all its deployed locations: the "
        "endpoint stops answering. The script, its versions, API keys and workspace data "
        "are kept, and it can be deployed again.",
        "button": "Undeploy",
    },
    "delete": {
        "title": "Delete custom script",
        "text": "Delete {name}? This permanently deletes the script, including its "
        "configurations and definitions. Deleted scripts cannot be restored.",
        "button": "Delete",
    },
    "delete_key": {
        "title": "Delete API key",
        "text": "Delete the API key {name}? A deleted API key becomes invalid and can no "
        "longer be used to access the script.",
        "button": "Delete",
    },
}
