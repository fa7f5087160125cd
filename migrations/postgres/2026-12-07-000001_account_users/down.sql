DROP TABLE account_users;
