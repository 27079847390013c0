"""Code both services share: settings parsing, logging and the RabbitMQ conventions."""
