"""What happens: calls, queue, operators, tickets, matching, offers, deadlines, surveys, figures."""
