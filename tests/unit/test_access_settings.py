"""Where API keys come from: the config and the environment variables it names."""

from speechcore.config.access import AccessArgs


def test_keys_from_config_and_environment_admin_keys_are_user_keys_too():
    args = AccessArgs(api_keys=["from-config"], admin_keys=["boss"], api_keys_env="MY_KEYS")
    users, admins = args.keys({"MY_KEYS": " a-key , another,, ", "ALLTALK_ADMIN_KEYS": "root-key",
                               "ALLTALK_API_KEYS": "ignored-by-this-config"})
    assert users == {"from-config", "a-key", "another", "boss", "root-key"}
    assert admins == {"boss", "root-key"}


def test_no_keys_anywhere_means_an_open_api():
    assert AccessArgs().keys({}) == (frozenset(), frozenset())


def test_keys_are_not_shown_in_the_config_repr():
    assert "s3cret" not in repr(AccessArgs(api_keys=["s3cret"]))
