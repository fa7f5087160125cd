DROP TABLE login_lockouts;
